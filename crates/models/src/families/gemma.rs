//! `gemma` (Gemma 1) and `gemma2`: embeddings scaled by sqrt(n_embd), RMSNorm weights stored
//! as (1 + w) by the converter (used as they are), GeGLU, NEOX rotary, tied output, Q scaled
//! before attention. Gemma 2 adds post-attention and post-FFN norms, attention-logit and
//! final-logit soft-capping, and sliding-window attention on alternating layers.

use compute::{AttnParams, RopeMode};

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, standard_swa, Family, LayerPlan,
    ModelPlan, ResidualKind, SlidingWindow,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const GEMMA: Family = Family {
    archs: &["gemma"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build: build_gemma,
};

pub(crate) const GEMMA2: Family = Family {
    archs: &["gemma2"],
    norm: NormKind::Rms,
    sliding_window: gemma2_swa,
    yarn_log_mul: YarnLogMul::Ignored,
    build: build_gemma2,
};

/// llama.cpp's Gemma 2 defaults: a 4096-token window on every other layer, starting with
/// the first; soft-caps 50 (attention) and 30 (final logits).
const GEMMA2_WINDOW: usize = 4096;
const GEMMA2_PATTERN: usize = 2;
const GEMMA2_ATTN_SOFTCAP: f32 = 50.0;
const GEMMA2_FINAL_SOFTCAP: f32 = 30.0;

fn gemma2_swa(h: &Hparams, n_layer: usize) -> Result<SlidingWindow, ModelError> {
    standard_swa(h, n_layer, GEMMA2_WINDOW, GEMMA2_PATTERN)
}

/// `sqrtf(n_embd)`, computed in f32 as llama.cpp does.
pub(crate) fn embd_scale(cfg: &Config) -> Option<f32> {
    Some((cfg.n_embd as f32).sqrt())
}

fn build_gemma(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let rope = file_rope(cfg, RopeMode::Neox);
    let model = ModelPlan {
        embd_scale: embd_scale(cfg),
        final_softcap: 0.0,
    };
    // Q is scaled by 1/sqrt(n_embd_head_v) (gemma.cpp), which is the key length in every
    // released model.
    let q_scale = 1.0 / (cfg.head_dim_v as f32).sqrt();
    build_decoder(ld, cfg, NormKind::Rms, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), true);
        attn.q_scale = q_scale;
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::Gated(Glu::GeGlu),
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

fn build_gemma2(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: &cfg.arch,
    };
    let attn_cap = h
        .opt_f32("attn_logit_softcapping")?
        .unwrap_or(GEMMA2_ATTN_SOFTCAP);
    let final_cap = h
        .opt_f32("final_logit_softcapping")?
        .unwrap_or(GEMMA2_FINAL_SOFTCAP);
    for (k, v) in [
        ("attn_logit_softcapping", attn_cap),
        ("final_logit_softcapping", final_cap),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(crate::error::hparam(
                h.key(k),
                format!("{v} must be a positive number"),
            ));
        }
    }
    // Sliding layers use `rope.freq_base_swa` when present, else the global base; both use
    // the file's scaling.
    let base_swa = h
        .opt_f32("rope.freq_base_swa")?
        .unwrap_or(cfg.rope_freq_base);
    let rope = file_rope(cfg, RopeMode::Neox);
    let rope_swa = cfg.rope.rope(RopeMode::Neox, cfg.n_rot, base_swa);
    let q_scale = query_scale(cfg, 46);
    let model = ModelPlan {
        embd_scale: embd_scale(cfg),
        final_softcap: final_cap,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |il| {
        let swa = cfg.swa_layers[il];
        let mut attn = plain_attn(cfg, if swa { rope_swa.clone() } else { rope.clone() }, true);
        attn.q_scale = q_scale;
        attn.params = AttnParams {
            n_head: cfg.n_head,
            scale: 1.0,
            softcap: attn_cap,
            window: if swa { cfg.sliding_window } else { 0 },
        };
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::Gated(Glu::GeGlu),
            residual: ResidualKind::Sequential,
            post_norms: true,
        })
    })
}

/// Gemma 2/3's `f_attention_scale`: the 27B model (recognised, as llama.cpp does, by its
/// layer count) scales Q by 1/sqrt(n_embd / n_head), the others by 1/sqrt(head_dim).
pub(crate) fn query_scale(cfg: &Config, n_layer_27b: usize) -> f32 {
    if cfg.n_layer == n_layer_27b {
        1.0 / ((cfg.n_embd / cfg.n_head) as f32).sqrt()
    } else {
        1.0 / (cfg.head_dim_k as f32).sqrt()
    }
}

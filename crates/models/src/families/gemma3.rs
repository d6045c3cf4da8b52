//! `gemma3` text models: as Gemma 2 (scaled embeddings, post norms, GeGLU, tied, Q
//! pre-scaled) plus per-head Q/K norms, without soft-capping; interleaved sliding-window
//! layers (every 6th global by default) with their own rope base and no rope scaling.

use compute::{AttnParams, Rope, RopeMode};

use super::gemma::{embd_scale, query_scale};
use super::{
    build_decoder, file_rope, plain_attn, standard_swa, Family, LayerPlan, ModelPlan, ResidualKind,
    SlidingWindow,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["gemma3"],
    norm: NormKind::Rms,
    sliding_window: gemma3_swa,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

/// llama.cpp's default when the file has no `sliding_window_pattern`.
const DEFAULT_SWA_PATTERN: usize = 6;
/// llama.cpp's default rope base of the sliding-window layers.
const DEFAULT_FREQ_BASE_SWA: f32 = 10000.0;

/// A window only when the file gives one.
fn gemma3_swa(h: &Hparams, n_layer: usize) -> Result<SlidingWindow, ModelError> {
    standard_swa(h, n_layer, 0, DEFAULT_SWA_PATTERN)
}

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: &cfg.arch,
    };
    let base_swa = h
        .opt_f32("rope.freq_base_swa")?
        .unwrap_or(DEFAULT_FREQ_BASE_SWA);
    let rope = file_rope(cfg, RopeMode::Neox);
    let rope_swa = Rope::new(RopeMode::Neox, cfg.n_rot, base_swa);
    let q_scale = query_scale(cfg, 62);
    let model = ModelPlan {
        embd_scale: embd_scale(cfg),
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |il| {
        let swa = cfg.swa_layers[il];
        let mut attn = plain_attn(cfg, if swa { rope_swa.clone() } else { rope.clone() }, true);
        attn.qk_norm = true;
        attn.q_scale = q_scale;
        attn.params = AttnParams {
            n_head: cfg.n_head,
            scale: 1.0,
            softcap: 0.0,
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

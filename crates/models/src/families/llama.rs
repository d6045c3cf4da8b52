//! `llama` (LLaMA 1-3, Mistral, Mixtral, SmolLM, Yi, DeepSeek distills, ...): RMSNorm, SwiGLU, rope
//! in NORM mode (adjacent pairs), optional llama3 `rope_freqs.weight` frequency divisors
//! (or LongRoPE factor sets).

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, read_moe, rope_factors, Family,
    LayerPlan, ModelPlan, ResidualKind,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::blocks::moe::{Gating, Shared};
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["llama"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    // Mixtral-style experts: softmax router, the chosen weights renormalised.
    let moe = if ld.has("blk.0.ffn_gate_inp.weight") {
        let h = Hparams {
            md: ld.file.metadata(),
            arch: &cfg.arch,
        };
        Some(read_moe(&h, cfg, Gating::Softmax, true, Shared::None)?)
    } else {
        None
    };
    let (rope, rope_long) = rope_factors(ld, cfg, file_rope(cfg, RopeMode::Norm))?;
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), false);
        attn.rope_long = rope_long.clone();
        Ok(LayerPlan {
            attn,
            ffn: match moe {
                Some(spec) => FfnKind::Moe(spec),
                None => FfnKind::Gated(Glu::SwiGlu),
            },
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

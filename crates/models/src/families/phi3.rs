//! `phi3` (Phi-3, Phi-3.5, Phi-4-mini): RMSNorm, fused QKV (`attn_qkv`), fused gate+up
//! (`ffn_up` of 2 * n_ff rows, SwiGLU over its halves), NEOX rotary with Q scaled by
//! 1/sqrt(head_dim) before attention, and LongRoPE for the 128k variants
//! (`rope_factors_short` / `rope_factors_long`, chosen by the context size).
//!
//! A `sliding_window` key is read but not used: llama.cpp disables Phi-3's sliding window
//! (ggml-org/llama.cpp#13676), and matching its output is the contract.

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, rope_factors, Family, LayerPlan,
    ModelPlan, ResidualKind,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::config::{NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["phi3"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let (rope, rope_long) = rope_factors(ld, cfg, file_rope(cfg, RopeMode::Neox))?;
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), true);
        attn.rope_long = rope_long.clone();
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::Gated(Glu::SwiGlu),
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

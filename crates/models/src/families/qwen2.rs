//! `qwen2` (Q/K/V biases) and `qwen3` (per-head Q/K RMSNorm, explicit head dims): like
//! llama but rope in NEOX mode (half-split pairs), as llama.cpp decides for these arches.

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, Family, LayerPlan, ModelPlan,
    ResidualKind,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::config::{NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["qwen2", "qwen3"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let rope = file_rope(cfg, RopeMode::Neox);
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), false);
        attn.qk_norm = cfg.arch == "qwen3";
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::Gated(Glu::SwiGlu),
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

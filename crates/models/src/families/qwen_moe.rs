//! `qwen2moe` and `qwen3moe`: the Qwen2 / Qwen3 attention (biases, resp. per-head Q/K
//! norms; NEOX rotary) with mixture-of-experts FFNs. Qwen2-MoE routes by softmax without
//! renormalising the chosen weights and adds a shared expert gated by
//! `sigmoid(ffn_gate_inp_shexp · x)`; Qwen3-MoE renormalises and has no shared expert.

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, read_moe, Family, LayerPlan,
    ModelPlan, ResidualKind,
};
use crate::blocks::ffn::FfnKind;
use crate::blocks::moe::{Gating, Shared};
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["qwen2moe", "qwen3moe"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: &cfg.arch,
    };
    let qwen3 = cfg.arch == "qwen3moe";
    let spec = if qwen3 {
        read_moe(&h, cfg, Gating::Softmax, true, Shared::None)?
    } else {
        read_moe(&h, cfg, Gating::Softmax, false, Shared::Gated)?
    };
    let rope = file_rope(cfg, RopeMode::Neox);
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), false);
        attn.qk_norm = qwen3;
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::Moe(spec),
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

//! `gptneox` (Pythia, GPT-NeoX-20B, ...): LayerNorm with bias, fused QKV with bias, partial
//! NEOX rotary (`rotary_pct`), GELU MLP with biases, and the residual layout from
//! `use_parallel_residual`: `x + attn(ln1(x)) + mlp(ln2(x))`, or sequential.

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, Family, LayerPlan, ModelPlan,
    ResidualKind,
};
use crate::blocks::ffn::FfnKind;
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["gptneox"],
    norm: NormKind::Layer,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::Ignored,
    build,
};

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: &cfg.arch,
    };
    // Required by llama.cpp too.
    let parallel = h.md.get_bool(&h.key("use_parallel_residual"))?;
    let rope = file_rope(cfg, RopeMode::Neox);
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Layer, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), false);
        attn.biases = true;
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::PlainGelu,
            residual: if parallel {
                ResidualKind::Parallel
            } else {
                ResidualKind::Sequential
            },
            post_norms: false,
        })
    })
}

//! `phi2`: LayerNorm with bias, one norm feeding attention and the MLP in parallel
//! (`x + attn(ln(x)) + mlp(ln(x))`), fused QKV with bias, partial NEOX rotary, Q scaled by
//! 1/sqrt(head_dim) before attention, GELU MLP with biases, output projection with bias.

use compute::RopeMode;

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, Family, LayerPlan, ModelPlan,
    ResidualKind,
};
use crate::blocks::ffn::FfnKind;
use crate::config::{NormKind, YarnLogMul};
use crate::error::ModelError;
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["phi2"],
    norm: NormKind::Layer,
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
    build_decoder(ld, cfg, NormKind::Layer, model, |_| {
        let mut attn = plain_attn(cfg, rope.clone(), true);
        attn.biases = true;
        Ok(LayerPlan {
            attn,
            ffn: FfnKind::PlainGelu,
            residual: ResidualKind::ParallelShared,
            post_norms: false,
        })
    })
}

//! The architecture registry: one file per family, each reading its hyperparameters and
//! saying which blocks every layer uses; [`FAMILIES`] collects them. Nothing outside this
//! folder matches on an architecture name.
//!
//! Adding a llama-like family is a file with a [`Family`] entry whose `build` fills a
//! [`LayerPlan`] per layer and calls [`build_decoder`].

mod deepseek2;
mod gemma;
mod gemma3;
mod gptneox;
mod llama;
mod phi2;
mod phi3;
mod qwen2;
mod qwen_moe;

use compute::{AttnParams, Rope, RopeMode};
use gguf::{Metadata, Value};

use crate::blocks::attention::AttnSpec;
use crate::blocks::ffn::{Ffn, FfnKind};
use crate::blocks::moe::{Gating, MoeSpec, Shared};
use crate::blocks::norm::Norm;
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::{hparam, ModelError};
use crate::forward::{Decoder, Layer, LayerAttn, Residual};
use crate::weights::Loader;
use crate::Config;

/// One architecture family.
pub(crate) struct Family {
    /// `general.architecture` values it reads.
    pub archs: &'static [&'static str],
    /// The norm its layers use (and so which epsilon key is required).
    pub norm: NormKind,
    /// The sliding-window size and which layers use it, as llama.cpp reads them for this
    /// family. Must not look at tensors: memory planning calls it on metadata alone.
    pub sliding_window: fn(&Hparams, usize) -> Result<SlidingWindow, ModelError>,
    /// Whether and how it reads `rope.scaling.yarn_log_multiplier`.
    pub yarn_log_mul: YarnLogMul,
    /// Loads the weights and composes the layers.
    pub build: fn(&Loader, &Config) -> Result<Decoder, ModelError>,
}

/// Sliding-window attention layout: `window` positions for the layers marked in `layers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    pub window: usize,
    pub layers: Vec<bool>,
}

impl SlidingWindow {
    pub fn none(n_layer: usize) -> Self {
        SlidingWindow {
            window: 0,
            layers: vec![false; n_layer],
        }
    }
}

/// Every family `Model::load` accepts.
pub(crate) const FAMILIES: &[&Family] = &[
    &llama::FAMILY,
    &qwen2::FAMILY,
    &qwen_moe::FAMILY,
    &gemma::GEMMA,
    &gemma::GEMMA2,
    &gemma3::FAMILY,
    &phi2::FAMILY,
    &phi3::FAMILY,
    &gptneox::FAMILY,
    &deepseek2::FAMILY,
];

pub(crate) fn find(arch: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.archs.contains(&arch))
}

/// Every supported `general.architecture` value.
pub fn supported_archs() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.archs.iter().copied())
        .collect()
}

fn no_sliding_window(_: &Hparams, n_layer: usize) -> Result<SlidingWindow, ModelError> {
    Ok(SlidingWindow::none(n_layer))
}

/// llama.cpp's `load_swa_pattern` for families with a standard sliding window: the window
/// from `attention.sliding_window` (`default_window` when absent; 0 or absent without a
/// default = none), the layers from `attention.sliding_window_pattern`, either a bool per
/// layer or a period `p` (in every group of `p` layers all but the last slide; 0 = all).
pub(crate) fn standard_swa(
    h: &Hparams,
    n_layer: usize,
    default_window: usize,
    default_pattern: usize,
) -> Result<SlidingWindow, ModelError> {
    let window = h
        .opt_usize("attention.sliding_window")?
        .unwrap_or(default_window);
    if window == 0 {
        return Ok(SlidingWindow::none(n_layer));
    }
    let key = h.key("attention.sliding_window_pattern");
    let layers = match h.md.get(&key) {
        None => pattern(default_pattern, n_layer),
        Some(Value::Array(items)) => {
            if items.len() != n_layer {
                return Err(hparam(
                    key,
                    format!("{} entries for {} layers", items.len(), n_layer),
                ));
            }
            items
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Ok(*b),
                    other => Err(hparam(
                        &key,
                        format!("expected bool entries, found {}", other.type_description()),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => pattern(h.usize("attention.sliding_window_pattern")?, n_layer),
    };
    Ok(SlidingWindow { window, layers })
}

/// llama.cpp's `set_swa_pattern`: in every group of `p` layers all but the last slide
/// (`p` = 0: every layer slides).
fn pattern(p: usize, n_layer: usize) -> Vec<bool> {
    (0..n_layer).map(|il| p == 0 || il % p < p - 1).collect()
}

/// The sliding-window layout of a file, read by its family (none for architectures this
/// crate does not know, so memory planning still works for them).
pub fn sliding_window(md: &Metadata, n_layer: usize) -> Result<SlidingWindow, ModelError> {
    let arch = md.get_str("general.architecture")?;
    crate::shape::check_layer_count(md, n_layer)?;
    match find(arch) {
        Some(f) => (f.sliding_window)(&Hparams { md, arch }, n_layer),
        None => Ok(SlidingWindow::none(n_layer)),
    }
}

/// How a layer's FFN joins the residual stream (see [`Residual`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResidualKind {
    Sequential,
    ParallelShared,
    Parallel,
}

/// What a family chooses for one layer; [`build_decoder`] loads the weights.
pub(crate) struct LayerPlan {
    pub attn: AttnSpec,
    pub ffn: FfnKind,
    pub residual: ResidualKind,
    /// `post_attention_norm` / `post_ffw_norm` (Gemma 2/3).
    pub post_norms: bool,
}

/// What a family chooses for the whole model.
pub(crate) struct ModelPlan {
    /// Multiplies the embeddings (Gemma: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    /// Final logit soft-cap (0 = none).
    pub final_softcap: f32,
}

/// A norm named `name` (`{name}.weight`, and `{name}.bias` for LayerNorm when present).
pub(crate) fn load_norm(
    ld: &Loader,
    cfg: &Config,
    kind: NormKind,
    name: &str,
) -> Result<Norm, ModelError> {
    let w = ld.vector(&format!("{name}.weight"), cfg.n_embd)?;
    Ok(match kind {
        NormKind::Rms => Norm::Rms {
            w,
            eps: cfg.norm_eps,
        },
        NormKind::Layer => Norm::Layer {
            w,
            b: ld.opt_vector(&format!("{name}.bias"), cfg.n_embd)?,
            eps: cfg.norm_eps,
        },
    })
}

/// Loads every layer as `plan(il)` says, plus the embedding, final norm and output (tied to
/// the embedding when the file has no `output.weight`; `output.bias` when present).
pub(crate) fn build_decoder(
    ld: &Loader,
    cfg: &Config,
    norm: NormKind,
    model: ModelPlan,
    plan: impl Fn(usize) -> Result<LayerPlan, ModelError>,
) -> Result<Decoder, ModelError> {
    let layers = (0..cfg.n_layer)
        .map(|il| {
            let p = plan(il)?;
            let blk = |s: &str| format!("blk.{il}.{s}");
            let residual = match p.residual {
                ResidualKind::Sequential => Residual::Sequential {
                    ffn_norm: load_norm(ld, cfg, norm, &blk("ffn_norm"))?,
                },
                ResidualKind::ParallelShared => Residual::ParallelShared,
                ResidualKind::Parallel => Residual::Parallel {
                    ffn_norm: load_norm(ld, cfg, norm, &blk("ffn_norm"))?,
                },
            };
            let post = |name: &str| -> Result<Option<Norm>, ModelError> {
                if p.post_norms {
                    load_norm(ld, cfg, norm, &blk(name)).map(Some)
                } else {
                    Ok(None)
                }
            };
            Ok(Layer {
                attn_norm: load_norm(ld, cfg, norm, &blk("attn_norm"))?,
                attn: LayerAttn::load(ld, cfg, il, p.attn)?,
                post_attn_norm: post("post_attention_norm")?,
                residual,
                ffn: Ffn::load(ld, cfg, il, p.ffn)?,
                post_ffn_norm: post("post_ffw_norm")?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let tok_embd = ld.matrix("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
    let output = ld
        .opt_matrix("output.weight", cfg.n_vocab, cfg.n_embd)?
        .unwrap_or_else(|| tok_embd.clone());
    Ok(Decoder {
        output_norm: load_norm(ld, cfg, norm, "output_norm")?,
        output_bias: ld.opt_vector("output.bias", cfg.n_vocab)?,
        tok_embd,
        output,
        embd_scale: model.embd_scale,
        layers,
        final_softcap: model.final_softcap,
    })
}

/// The usual attention of a layer: softmax scale 1/sqrt(head_dim) (or `q_scale` applied to
/// Q instead, as some graphs do), no soft-cap, no window.
pub(crate) fn plain_attn(cfg: &Config, rope: Rope, q_prescaled: bool) -> AttnSpec {
    let s = 1.0 / (cfg.head_dim_k as f32).sqrt();
    AttnSpec {
        qk_norm: false,
        biases: false,
        rope,
        rope_long: None,
        q_scale: if q_prescaled { s } else { 1.0 },
        params: AttnParams {
            n_head: cfg.n_head,
            scale: if q_prescaled { 1.0 } else { s },
            softcap: 0.0,
            window: 0,
        },
        latent: None,
    }
}

/// The model's rope in `mode` with its file's scaling settings.
pub(crate) fn file_rope(cfg: &Config, mode: RopeMode) -> Rope {
    cfg.rope.rope(mode, cfg.n_rot, cfg.rope_freq_base)
}

/// llama.cpp's `get_rope_factors`: `rope_freqs.weight` (llama3-style divisors) for every
/// context when the file has it; else LongRoPE's `rope_factors_short.weight` for contexts up
/// to the original one and `rope_factors_long.weight` beyond. Returns the rope for short
/// contexts and, when the file has LongRoPE factors, the one for long contexts. A file that
/// declares `longrope` scaling without the factors is refused rather than run unscaled.
pub(crate) fn rope_factors(
    ld: &Loader,
    cfg: &Config,
    base: Rope,
) -> Result<(Rope, Option<Rope>), ModelError> {
    let half = cfg.n_rot / 2;
    if let Some(f) = ld.opt_vector("rope_freqs.weight", half)? {
        let mut r = base;
        r.freq_factors = Some(f);
        return Ok((r, None));
    }
    let short = ld.opt_vector("rope_factors_short.weight", half)?;
    let long = ld.opt_vector("rope_factors_long.weight", half)?;
    if short.is_none() && long.is_none() {
        if cfg.rope.scaling == crate::config::RopeScaling::LongRope {
            return Err(ModelError::MissingTensor(
                "rope_factors_long.weight / rope_factors_short.weight (the file declares \
                 `longrope` rope scaling)"
                    .into(),
            ));
        }
        return Ok((base, None));
    }
    let mut s = base.clone();
    s.freq_factors = short;
    let mut l = base;
    l.freq_factors = long;
    Ok((s, Some(l)))
}

/// A MoE layer's settings from the `{arch}.expert_*` keys, with the family's defaults for
/// what its files may leave out (`gating` when `expert_gating_func` is absent, `norm` when
/// `expert_weights_norm` is absent).
pub(crate) fn read_moe(
    h: &Hparams,
    cfg: &Config,
    gating: Gating,
    norm: bool,
    shared: Shared,
) -> Result<MoeSpec, ModelError> {
    let n_expert = h.positive("expert_count")?;
    let n_used = h.positive("expert_used_count")?;
    if n_used > n_expert {
        return Err(hparam(
            h.key("expert_used_count"),
            format!("{n_used} is more than expert_count {n_expert}"),
        ));
    }
    let n_ff_exp = h
        .opt_usize("expert_feed_forward_length")?
        .filter(|&v| v > 0)
        .unwrap_or(cfg.n_ff);
    let gating = match h.opt_usize("expert_gating_func")? {
        None | Some(0) => gating,
        Some(1) => Gating::Softmax,
        Some(2) => Gating::Sigmoid,
        Some(3) => Gating::SoftmaxWeight,
        Some(other) => {
            return Err(hparam(
                h.key("expert_gating_func"),
                format!("gating function {other} is not supported (1 softmax, 2 sigmoid, 3 softmax over the chosen)"),
            ))
        }
    };
    let n_ff_shared = match shared {
        Shared::None => 0,
        Shared::Plain => n_ff_exp.saturating_mul(h.opt_usize("expert_shared_count")?.unwrap_or(1)),
        Shared::Gated => h
            .opt_usize("expert_shared_feed_forward_length")?
            .filter(|&v| v > 0)
            .unwrap_or(cfg.n_ff),
    };
    let weights_scale = h.opt_f32("expert_weights_scale")?.unwrap_or(0.0);
    if !weights_scale.is_finite() {
        return Err(hparam(h.key("expert_weights_scale"), "must be finite"));
    }
    let n_group = h.opt_usize("expert_group_count")?.unwrap_or(0);
    let n_group_used = h.opt_usize("expert_group_used_count")?.unwrap_or(0);
    if n_group > 0 && (!n_expert.is_multiple_of(n_group) || n_group_used > n_group) {
        return Err(hparam(
            h.key("expert_group_count"),
            format!(
                "{n_group} groups must divide expert_count {n_expert} and hold \
                 expert_group_used_count {n_group_used}"
            ),
        ));
    }
    Ok(MoeSpec {
        n_expert,
        n_used,
        n_ff_exp,
        gating,
        norm_weights: h
            .md
            .opt_bool(&h.key("expert_weights_norm"))?
            .unwrap_or(norm),
        weights_scale,
        n_group,
        n_group_used,
        shared,
        n_ff_shared,
    })
}

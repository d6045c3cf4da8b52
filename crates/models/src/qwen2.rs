//! `qwen2` (Q/K/V biases) and `qwen3` (per-head Q/K RMSNorm, explicit head dims): like
//! llama but rope in NEOX mode (half-split pairs), as llama.cpp decides for these arches.

use compute::{AttnParams, Rope, RopeMode};

use crate::decoder::{load_io, load_layer, Act, Decoder, LayerOpts};
use crate::error::ModelError;
use crate::weights::Loader;
use crate::Config;

pub(crate) fn load(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let mut rope = Rope::new(RopeMode::Neox, cfg.n_rot, cfg.rope_freq_base);
    rope.freq_scale = cfg.rope_freq_scale;
    let attn = AttnParams {
        n_head: cfg.n_head,
        scale: 1.0 / (cfg.head_dim_k as f32).sqrt(),
        softcap: 0.0,
        window: 0,
    };
    let opts = LayerOpts {
        qk_norm: cfg.arch == "qwen3",
        post_norms: false,
    };
    let layers = (0..cfg.n_layer)
        .map(|il| load_layer(ld, cfg, il, opts, rope.clone(), attn, 1.0))
        .collect::<Result<Vec<_>, _>>()?;
    let (tok_embd, output_norm, output) = load_io(ld, cfg)?;
    Ok(Decoder {
        tok_embd,
        embd_scale: None,
        layers,
        output_norm,
        output,
        act: Act::SwiGlu,
        eps: cfg.norm_eps,
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        dk: cfg.head_dim_k,
        dv: cfg.head_dim_v,
    })
}

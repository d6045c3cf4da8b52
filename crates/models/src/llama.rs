//! `llama` architecture (LLaMA 1-3, Mistral-likes, SmolLM): RMSNorm, SwiGLU, rope in NORM
//! mode (adjacent pairs), optional llama3 `rope_freqs.weight` frequency divisors.

use compute::{AttnParams, Rope, RopeMode};

use crate::decoder::{load_io, load_layer, Act, Decoder, LayerOpts};
use crate::error::ModelError;
use crate::weights::Loader;
use crate::Config;

pub(crate) fn load(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    if ld.has("blk.0.ffn_gate_inp.weight") {
        return Err(ModelError::Input(
            "llama mixture-of-experts models (blk.0.ffn_gate_inp.weight) are not supported yet"
                .into(),
        ));
    }
    let mut rope = Rope::new(RopeMode::Norm, cfg.n_rot, cfg.rope_freq_base);
    rope.freq_scale = cfg.rope_freq_scale;
    rope.freq_factors = ld.opt_vector("rope_freqs.weight", cfg.n_rot / 2)?;
    let attn = AttnParams {
        n_head: cfg.n_head,
        scale: 1.0 / (cfg.head_dim_k as f32).sqrt(),
        softcap: 0.0,
        window: 0,
    };
    let layers = (0..cfg.n_layer)
        .map(|il| load_layer(ld, cfg, il, LayerOpts::default(), rope.clone(), attn, 1.0))
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

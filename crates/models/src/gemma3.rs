//! `gemma3` text models: embeddings scaled by sqrt(n_embd), RMSNorm weights stored as
//! (1 + w) by the converter, per-head Q/K norms, post-attention and post-FFN norms, GeGLU,
//! rope NEOX, interleaved sliding-window layers with their own rope base, Q pre-scaled.

use compute::{AttnParams, Rope, RopeMode};
use gguf::Value;

use crate::config::Hparams;
use crate::decoder::{load_io, load_layer, Act, Decoder, LayerOpts};
use crate::error::{hparam, ModelError};
use crate::weights::Loader;
use crate::Config;

/// llama.cpp's default when the file has no `sliding_window_pattern`.
const DEFAULT_SWA_PATTERN: usize = 6;
/// llama.cpp's default rope base of the sliding-window layers.
const DEFAULT_FREQ_BASE_SWA: f32 = 10000.0;

/// Marks sliding-window layers in `cfg` from the metadata.
pub(crate) fn configure(md: &gguf::Metadata, cfg: &mut Config) -> Result<(), ModelError> {
    let (window, layers) = sliding_window(md, cfg.n_layer)?;
    cfg.sliding_window = window;
    if window > 0 {
        cfg.swa_layers = layers;
    }
    Ok(())
}

/// Sliding-window size of a gemma3 file (0 = none) and which of its `n_layer` layers use it,
/// as llama.cpp reads them. Public so memory planning sees the same layers the model runs.
pub fn sliding_window(
    md: &gguf::Metadata,
    n_layer: usize,
) -> Result<(usize, Vec<bool>), ModelError> {
    let h = Hparams { md, arch: "gemma3" };
    let window = h.opt_usize("attention.sliding_window")?.unwrap_or(0);
    if window == 0 {
        return Ok((0, vec![false; n_layer]));
    }
    let key = h.key("attention.sliding_window_pattern");
    let layers = match md.get(&key) {
        None => pattern(DEFAULT_SWA_PATTERN, n_layer),
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
        Some(_) => {
            let p = h.positive("attention.sliding_window_pattern")?;
            pattern(p, n_layer)
        }
    };
    Ok((window, layers))
}

/// llama.cpp's `set_swa_pattern`: in every group of `p` layers all but the last slide.
fn pattern(p: usize, n_layer: usize) -> Vec<bool> {
    (0..n_layer).map(|il| il % p < p - 1).collect()
}

pub(crate) fn load(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: "gemma3",
    };
    let base_swa = h
        .opt_f32("rope.freq_base_swa")?
        .unwrap_or(DEFAULT_FREQ_BASE_SWA);
    // The 27B model (62 layers) scales by 1/sqrt(n_embd / n_head), the others by the head dim.
    let q_scale = if cfg.n_layer == 62 {
        1.0 / ((cfg.n_embd / cfg.n_head) as f32).sqrt()
    } else {
        1.0 / (cfg.head_dim_k as f32).sqrt()
    };
    let opts = LayerOpts {
        qk_norm: true,
        post_norms: true,
    };
    let layers = (0..cfg.n_layer)
        .map(|il| {
            let swa = cfg.swa_layers[il];
            let rope = if swa {
                Rope::new(RopeMode::Neox, cfg.n_rot, base_swa)
            } else {
                let mut r = Rope::new(RopeMode::Neox, cfg.n_rot, cfg.rope_freq_base);
                r.freq_scale = cfg.rope_freq_scale;
                r
            };
            let attn = AttnParams {
                n_head: cfg.n_head,
                scale: 1.0,
                softcap: 0.0,
                window: if swa { cfg.sliding_window } else { 0 },
            };
            load_layer(ld, cfg, il, opts, rope, attn, q_scale)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (tok_embd, output_norm, output) = load_io(ld, cfg)?;
    Ok(Decoder {
        tok_embd,
        embd_scale: Some((cfg.n_embd as f32).sqrt()),
        layers,
        output_norm,
        output,
        act: Act::GeGlu,
        eps: cfg.norm_eps,
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        dk: cfg.head_dim_k,
        dv: cfg.head_dim_v,
    })
}

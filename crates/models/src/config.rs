//! Hyperparameters from the `{arch}.*` metadata keys, validated against each other.

use gguf::Metadata;

use crate::error::{hparam, ModelError};

/// What a model is, as read from its metadata (and the shapes of its embedding).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_ff: usize,
    /// Trained context length.
    pub context_length: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    pub rope_freq_base: f32,
    /// 1 / rope.scaling.factor (1 without scaling).
    pub rope_freq_scale: f32,
    pub norm_eps: f32,
    /// Sliding-window size of the layers that use one (0 = none).
    pub sliding_window: usize,
    /// Which layers use the sliding window.
    pub swa_layers: Vec<bool>,
}

/// Typed access to `{arch}.key` with errors naming the full key.
pub(crate) struct Hparams<'a> {
    pub md: &'a Metadata,
    pub arch: &'a str,
}

impl Hparams<'_> {
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    pub fn usize(&self, k: &str) -> Result<usize, ModelError> {
        Ok(self.md.get_u64(&self.key(k))? as usize)
    }

    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>, ModelError> {
        Ok(self.md.opt_u64(&self.key(k))?.map(|v| v as usize))
    }

    pub fn f32(&self, k: &str) -> Result<f32, ModelError> {
        Ok(self.md.get_f32(&self.key(k))?)
    }

    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.md.opt_f32(&self.key(k))?)
    }

    pub fn opt_str(&self, k: &str) -> Result<Option<&str>, ModelError> {
        Ok(self.md.opt_str(&self.key(k))?)
    }

    pub fn positive(&self, k: &str) -> Result<usize, ModelError> {
        let v = self.usize(k)?;
        if v == 0 {
            return Err(hparam(self.key(k), "must be positive"));
        }
        Ok(v)
    }
}

impl Config {
    /// Reads the hyperparameters shared by the decoder-only families. `n_vocab` comes from
    /// the embedding matrix.
    pub(crate) fn common(md: &Metadata, arch: &str, n_vocab: usize) -> Result<Config, ModelError> {
        let h = Hparams { md, arch };
        let n_embd = h.positive("embedding_length")?;
        let n_layer = h.positive("block_count")?;
        let n_head = h.positive("attention.head_count")?;
        let n_head_kv = h.opt_usize("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(hparam(
                h.key("attention.head_count_kv"),
                format!("{n_head_kv} does not divide head_count {n_head}"),
            ));
        }
        let head_dim_k = match h.opt_usize("attention.key_length")? {
            Some(v) => v,
            None => {
                if !n_embd.is_multiple_of(n_head) {
                    return Err(hparam(
                        h.key("attention.key_length"),
                        format!("absent and embedding_length {n_embd} is not a multiple of head_count {n_head}"),
                    ));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = h
            .opt_usize("attention.value_length")?
            .unwrap_or(n_embd / n_head);
        if head_dim_k == 0 || head_dim_v == 0 {
            return Err(hparam(
                h.key("attention.key_length"),
                "head dimension must be positive",
            ));
        }
        let n_rot = h.opt_usize("rope.dimension_count")?.unwrap_or(head_dim_k);
        if n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(hparam(
                h.key("rope.dimension_count"),
                format!("{n_rot} must be even and at most the head dimension {head_dim_k}"),
            ));
        }
        let rope_freq_base = h.opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        if rope_freq_base.is_nan() || rope_freq_base <= 0.0 {
            return Err(hparam(
                h.key("rope.freq_base"),
                format!("{rope_freq_base} must be positive"),
            ));
        }
        let scaling = h
            .opt_str("rope.scaling.type")?
            .unwrap_or("linear")
            .to_string();
        let factor = match h.opt_f32("rope.scaling.factor")? {
            Some(f) => f,
            None => h.opt_f32("rope.scale_linear")?.unwrap_or(0.0),
        };
        let rope_freq_scale = match scaling.as_str() {
            "none" => 1.0,
            "linear" | "longrope" => {
                if factor == 0.0 {
                    1.0
                } else if factor > 0.0 {
                    1.0 / factor
                } else {
                    return Err(hparam(
                        h.key("rope.scaling.factor"),
                        format!("{factor} must be positive"),
                    ));
                }
            }
            other => {
                return Err(hparam(
                    h.key("rope.scaling.type"),
                    format!(
                        "rope scaling `{other}` is not supported yet (supported: none, linear)"
                    ),
                ))
            }
        };
        let context_length = h.positive("context_length")?;
        let n_ff = h.positive("feed_forward_length")?;
        let norm_eps = h.f32("attention.layer_norm_rms_epsilon")?;
        if norm_eps.is_nan() || norm_eps < 0.0 {
            return Err(hparam(
                h.key("attention.layer_norm_rms_epsilon"),
                "must be non-negative",
            ));
        }
        Ok(Config {
            arch: arch.to_string(),
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff,
            context_length,
            n_rot,
            rope_freq_base,
            rope_freq_scale,
            norm_eps,
            sliding_window: 0,
            swa_layers: vec![false; n_layer],
        })
    }
}

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
    /// Rope scaling as read from `rope.scaling.*`.
    pub rope: RopeConfig,
    pub norm_eps: f32,
    /// Sliding-window size of the layers that use one (0 = none).
    pub sliding_window: usize,
    /// Which layers use the sliding window.
    pub swa_layers: Vec<bool>,
}

/// Which normalisation a family uses, and so which epsilon key it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NormKind {
    /// `attention.layer_norm_rms_epsilon`
    Rms,
    /// `attention.layer_norm_epsilon`
    Layer,
}

/// How rope positions are scaled (`rope.scaling.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeScaling {
    None,
    Linear,
    Yarn,
    /// Phi-3 128k / Phi-3.5 / Phi-4-mini: per-pair frequency divisors, a short set for
    /// contexts up to the original one and a long set beyond (`rope_factors_{short,long}`).
    LongRope,
}

/// Rope scaling settings, resolved as llama.cpp's context setup resolves them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig {
    pub scaling: RopeScaling,
    /// 1 / rope.scaling.factor (1 without scaling or with `none`).
    pub freq_scale: f32,
    /// `rope.scaling.original_context_length` (the trained context without it).
    pub n_ctx_orig: usize,
    /// YaRN extrapolation mix: 1 for YaRN, else 0.
    pub ext_factor: f32,
    /// Multiplies cos and sin: `rope.scaling.attn_factor`, and for YaRN the mscale
    /// correction llama.cpp applies.
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// YaRN `mscale_all_dim` (`rope.scaling.yarn_log_multiplier` as the family reads it; 0
    /// when the family does not read the key).
    pub yarn_log_mul: f32,
}

/// How a family reads `rope.scaling.yarn_log_multiplier` (llama.cpp reads it per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum YarnLogMul {
    /// The key is not read.
    Ignored,
    /// DeepSeek-V2/V3: the converter stored `0.1 * mscale_all_dim`, so the value is divided
    /// by 0.1 on load, and llama.cpp's DEEPSEEK2 special case takes `mscale` equal to
    /// `mscale_all_dim` unless it is 1.
    DeepSeek2,
}

impl RopeConfig {
    /// [`RopeConfig`] with the family's reading of the YaRN log multiplier (the YaRN
    /// attention factor of llama.cpp's context setup depends on it).
    pub(crate) fn read_with(h: &Hparams, log_mul: YarnLogMul) -> Result<RopeConfig, ModelError> {
        let ty = h.opt_str("rope.scaling.type")?.unwrap_or("linear");
        let scaling = match ty {
            "none" => RopeScaling::None,
            "linear" => RopeScaling::Linear,
            "yarn" => RopeScaling::Yarn,
            "longrope" => RopeScaling::LongRope,
            other => {
                return Err(hparam(
                    h.key("rope.scaling.type"),
                    format!(
                        "rope scaling `{other}` is not supported (supported: none, linear, yarn, longrope)"
                    ),
                ))
            }
        };
        let factor = match h.opt_f32("rope.scaling.factor")? {
            Some(f) => f,
            None => h.opt_f32("rope.scale_linear")?.unwrap_or(0.0),
        };
        if factor.is_nan() || factor < 0.0 || factor.is_infinite() {
            return Err(hparam(
                h.key("rope.scaling.factor"),
                format!("{factor} must be a positive number"),
            ));
        }
        let freq_scale = if scaling == RopeScaling::None || factor == 0.0 {
            1.0
        } else {
            1.0 / factor
        };
        let n_ctx_orig = match h.opt_usize("rope.scaling.original_context_length")? {
            Some(v) if v > 0 => v,
            _ => h.positive("context_length")?,
        };
        let rope_attn_factor = h.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(hparam(
                h.key("rope.scaling.attn_factor"),
                format!("{rope_attn_factor} must be a positive number"),
            ));
        }
        let ext_factor = if scaling == RopeScaling::Yarn {
            1.0
        } else {
            0.0
        };
        let yarn_log_mul = match log_mul {
            YarnLogMul::Ignored => 0.0,
            YarnLogMul::DeepSeek2 => match h.opt_f32("rope.scaling.yarn_log_multiplier")? {
                Some(v) if v.is_finite() => v / 0.1,
                Some(v) => {
                    return Err(hparam(
                        h.key("rope.scaling.yarn_log_multiplier"),
                        format!("{v} must be a finite number"),
                    ))
                }
                None => 0.0,
            },
        };
        let mut attn_factor = 1.0f32;
        if ext_factor != 0.0 {
            // llama_context's YaRN setup: the magnitude correction get_mscale(factor), then
            // cancelled by 1 / (1 + 0.1 ln factor) because ggml's rope multiplies it back in.
            let factor = 1.0 / freq_scale;
            let get_mscale = |mscale: f32| {
                if factor <= 1.0 {
                    1.0
                } else {
                    0.1 * mscale * factor.ln() + 1.0
                }
            };
            attn_factor = if yarn_log_mul != 0.0 {
                // mscale is assumed 1, except in llama.cpp's DEEPSEEK2 special case.
                let mscale = if log_mul == YarnLogMul::DeepSeek2 && yarn_log_mul != 1.0 {
                    yarn_log_mul
                } else {
                    1.0
                };
                get_mscale(mscale) / get_mscale(yarn_log_mul)
            } else {
                get_mscale(1.0)
            };
            attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
        }
        attn_factor *= rope_attn_factor;
        Ok(RopeConfig {
            scaling,
            freq_scale,
            n_ctx_orig,
            ext_factor,
            attn_factor,
            beta_fast: 32.0,
            beta_slow: 1.0,
            yarn_log_mul,
        })
    }

    /// A rope of `mode` over `n_rot` dimensions with these settings, base `freq_base`.
    pub(crate) fn rope(
        &self,
        mode: compute::RopeMode,
        n_rot: usize,
        freq_base: f32,
    ) -> compute::Rope {
        let mut r = compute::Rope::new(mode, n_rot, freq_base);
        r.freq_scale = self.freq_scale;
        r.ext_factor = self.ext_factor;
        r.attn_factor = self.attn_factor;
        r.beta_fast = self.beta_fast;
        r.beta_slow = self.beta_slow;
        r.n_ctx_orig = self.n_ctx_orig;
        r
    }
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
    pub(crate) fn common(
        md: &Metadata,
        arch: &str,
        n_vocab: usize,
        norm: NormKind,
        yarn_log_mul: YarnLogMul,
    ) -> Result<Config, ModelError> {
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
        let rope = RopeConfig::read_with(&h, yarn_log_mul)?;
        let context_length = h.positive("context_length")?;
        let n_ff = h.positive("feed_forward_length")?;
        let eps_key = match norm {
            NormKind::Rms => "attention.layer_norm_rms_epsilon",
            NormKind::Layer => "attention.layer_norm_epsilon",
        };
        let norm_eps = h.f32(eps_key)?;
        if norm_eps.is_nan() || norm_eps < 0.0 {
            return Err(hparam(h.key(eps_key), "must be non-negative"));
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
            rope,
            norm_eps,
            sliding_window: 0,
            swa_layers: vec![false; n_layer],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::{GgufWriter, Value};

    fn rope_of(kvs: &[(&str, Value)]) -> Result<RopeConfig, ModelError> {
        rope_of_with(kvs, YarnLogMul::Ignored)
    }

    fn rope_of_with(kvs: &[(&str, Value)], log_mul: YarnLogMul) -> Result<RopeConfig, ModelError> {
        let mut w = GgufWriter::new();
        w.add("t.context_length", Value::U32(4096)).unwrap();
        for (k, v) in kvs {
            w.add(format!("t.{k}"), v.clone()).unwrap();
        }
        RopeConfig::read_with(
            &Hparams {
                md: w.metadata(),
                arch: "t",
            },
            log_mul,
        )
    }

    #[test]
    fn rope_scaling_types_resolve_as_llama_cpp_does() {
        // No key: linear without a factor, i.e. unscaled.
        let r = rope_of(&[]).unwrap();
        assert_eq!(
            (r.scaling, r.freq_scale, r.ext_factor),
            (RopeScaling::Linear, 1.0, 0.0)
        );
        assert_eq!(r.n_ctx_orig, 4096);
        // `none` ignores a factor.
        let r = rope_of(&[
            ("rope.scaling.type", Value::String("none".into())),
            ("rope.scaling.factor", Value::F32(4.0)),
        ])
        .unwrap();
        assert_eq!(r.freq_scale, 1.0);
        // YaRN: ext_factor 1; the mscale 1 + 0.1 ln(s) is cancelled by llama.cpp's
        // 1 / (1 + 0.1 ln(s)), leaving rope.scaling.attn_factor.
        let r = rope_of(&[
            ("rope.scaling.type", Value::String("yarn".into())),
            ("rope.scaling.factor", Value::F32(4.0)),
            ("rope.scaling.original_context_length", Value::U32(1024)),
            ("rope.scaling.attn_factor", Value::F32(1.5)),
        ])
        .unwrap();
        assert_eq!(r.ext_factor, 1.0);
        assert_eq!(r.freq_scale, 0.25);
        assert_eq!(r.n_ctx_orig, 1024);
        assert!((r.attn_factor - 1.5).abs() < 1e-6, "{}", r.attn_factor);
        // LongRoPE: attn_factor as given, no YaRN ramp.
        let r = rope_of(&[
            ("rope.scaling.type", Value::String("longrope".into())),
            ("rope.scaling.attn_factor", Value::F32(1.1832)),
        ])
        .unwrap();
        assert_eq!(
            (r.scaling, r.ext_factor, r.attn_factor),
            (RopeScaling::LongRope, 0.0, 1.1832)
        );
        // Unknown types and bad factors are errors naming the key.
        let e = rope_of(&[("rope.scaling.type", Value::String("su".into()))]).unwrap_err();
        assert!(e.to_string().contains("t.rope.scaling.type") && e.to_string().contains("`su`"));
        let e = rope_of(&[("rope.scaling.factor", Value::F32(-2.0))]).unwrap_err();
        assert!(e.to_string().contains("t.rope.scaling.factor"), "{e}");
    }

    #[test]
    fn deepseek2_yarn_log_multiplier_as_llama_cpp_reads_it() {
        let yarn = |mul: f32| {
            vec![
                ("rope.scaling.type", Value::String("yarn".into())),
                ("rope.scaling.factor", Value::F32(4.0)),
                ("rope.scaling.yarn_log_multiplier", Value::F32(mul)),
            ]
        };
        let cancel = 1.0 / (1.0 + 0.1 * 4f32.ln());
        // V2-Lite: 0.0707 / 0.1 = mscale_all_dim 0.707; DEEPSEEK2 takes mscale = 0.707
        // too, so the ratio is 1 and only the cancelling factor remains.
        let r = rope_of_with(&yarn(0.0707), YarnLogMul::DeepSeek2).unwrap();
        assert!((r.yarn_log_mul - 0.707).abs() < 1e-6, "{}", r.yarn_log_mul);
        assert_eq!(r.attn_factor, cancel);
        // V3: mscale_all_dim 1.0, mscale 1.0: the same.
        let r = rope_of_with(&yarn(0.1), YarnLogMul::DeepSeek2).unwrap();
        assert_eq!((r.yarn_log_mul, r.attn_factor), (1.0, cancel));
        // Families that do not read the key keep get_mscale(factor) (cancelled to ~1).
        let r = rope_of_with(&yarn(0.0707), YarnLogMul::Ignored).unwrap();
        assert_eq!(r.yarn_log_mul, 0.0);
        assert!((r.attn_factor - 1.0).abs() < 1e-6);
    }
}

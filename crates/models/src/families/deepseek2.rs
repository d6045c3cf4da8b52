//! `deepseek2` (DeepSeek-V2, V2-Lite, V2.5, V3, R1, Kimi-K2, ...): RMSNorm, multi-head
//! latent attention ([`crate::blocks::mla`]) with rope in NORM mode on the rope part only,
//! YaRN with `yarn_log_multiplier` folded into the attention scale as llama.cpp does, the
//! first `leading_dense_block_count` layers with a dense SwiGLU FFN and the rest
//! mixture-of-experts with shared experts.

use compute::{AttnParams, RopeMode};

use super::{
    build_decoder, file_rope, no_sliding_window, plain_attn, read_moe, Family, LayerPlan,
    ModelPlan, ResidualKind,
};
use crate::blocks::ffn::{FfnKind, Glu};
use crate::blocks::mla::MlaDims;
use crate::blocks::moe::{Gating, MoeSpec, Shared};
use crate::config::{Hparams, NormKind, YarnLogMul};
use crate::error::{hparam, ModelError};
use crate::forward::Decoder;
use crate::weights::Loader;
use crate::Config;

pub(crate) const FAMILY: Family = Family {
    archs: &["deepseek2"],
    norm: NormKind::Rms,
    sliding_window: no_sliding_window,
    yarn_log_mul: YarnLogMul::DeepSeek2,
    build,
};

/// What llama.cpp's `load_arch_hparams` reads for deepseek2 beyond the common keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DeepSeek2 {
    /// Layers before this one have a dense FFN.
    pub n_layer_dense_lead: usize,
    pub mla: MlaDims,
}

/// V2-Lite style files (and GigaChat3 / Kanana-2) may leave `q_lora_rank` out: llama.cpp
/// recognises them by their layer count and vocabulary.
fn is_lite(n_layer: usize, n_vocab: usize) -> bool {
    n_layer == 27 || n_layer == 26 || (n_layer == 48 && n_vocab == 128256)
}

impl DeepSeek2 {
    pub fn read(h: &Hparams, cfg: &Config) -> Result<Self, ModelError> {
        let q_lora_rank = if is_lite(cfg.n_layer, cfg.n_vocab) {
            h.opt_usize("attention.q_lora_rank")?.unwrap_or(0)
        } else {
            h.usize("attention.q_lora_rank")?
        };
        let kv_lora_rank = h.positive("attention.kv_lora_rank")?;
        let (k_mla, v_mla) = (
            h.opt_usize("attention.key_length_mla")?,
            h.opt_usize("attention.value_length_mla")?,
        );
        let qk_rope = cfg.n_rot;
        let Some((k_mla, v_mla)) = k_mla.zip(v_mla) else {
            // llama.cpp's is_mla() is false without them: an older conversion with the
            // unsplit attn_kv_b, run as plain multi-head attention over per-head keys of
            // key_length (nope + rope) and values of value_length.
            if cfg.n_head_kv != cfg.n_head || cfg.head_dim_k <= qk_rope {
                return Err(hparam(
                    h.key("attention.key_length"),
                    format!(
                        "without key_length_mla (an attn_kv_b file), head_count_kv must equal \
                         head_count {} and key_length {} exceed the rope dimensions {qk_rope}",
                        cfg.n_head, cfg.head_dim_k
                    ),
                ));
            }
            return Ok(DeepSeek2 {
                n_layer_dense_lead: h.opt_usize("leading_dense_block_count")?.unwrap_or(0),
                mla: MlaDims {
                    n_head: cfg.n_head,
                    q_lora_rank,
                    kv_lora_rank,
                    qk_nope: cfg.head_dim_k - qk_rope,
                    qk_rope,
                    v_head: cfg.head_dim_v,
                    decompressed: true,
                },
            });
        };
        if k_mla <= qk_rope || v_mla == 0 {
            return Err(hparam(
                h.key("attention.key_length_mla"),
                format!(
                    "{k_mla} must exceed rope.dimension_count {qk_rope} (and value_length_mla \
                     {v_mla} be positive)"
                ),
            ));
        }
        // The file's key/value lengths are the absorbed sizes llama.cpp's cache uses.
        if cfg.n_head_kv != 1
            || cfg.head_dim_k != kv_lora_rank + qk_rope
            || cfg.head_dim_v != kv_lora_rank
        {
            return Err(hparam(
                h.key("attention.key_length"),
                format!(
                    "MLA expects head_count_kv 1, key_length {} and value_length {} \
                     (kv_lora_rank + rope, kv_lora_rank); found {}, {} and {}",
                    kv_lora_rank + qk_rope,
                    kv_lora_rank,
                    cfg.n_head_kv,
                    cfg.head_dim_k,
                    cfg.head_dim_v
                ),
            ));
        }
        Ok(DeepSeek2 {
            n_layer_dense_lead: h.opt_usize("leading_dense_block_count")?.unwrap_or(0),
            mla: MlaDims {
                n_head: cfg.n_head,
                q_lora_rank,
                kv_lora_rank,
                qk_nope: k_mla - qk_rope,
                qk_rope,
                v_head: v_mla,
                decompressed: false,
            },
        })
    }
}

/// llama.cpp's `kq_scale` for deepseek2: the YaRN attention factor with the rope's
/// cancellation undone, times `1 + 0.1 * mscale_all_dim * ln(1 / freq_scale)`, squared,
/// over sqrt(key_length_mla). In f32, in llama.cpp's order.
pub(crate) fn kq_scale(cfg: &Config, key_length_mla: usize) -> f32 {
    let r = &cfg.rope;
    let attn_factor_org = r.attn_factor * (1.0 + 0.1 * (1.0 / r.freq_scale).ln());
    let mscale = attn_factor_org * (1.0 + 0.1 * r.yarn_log_mul * (1.0 / r.freq_scale).ln());
    1.0 * mscale * mscale / (key_length_mla as f32).sqrt()
}

/// The MoE layers' spec from the deepseek2 metadata, as llama.cpp's `load_arch_hparams`
/// reads it.
pub(crate) fn moe_spec(h: &Hparams, cfg: &Config) -> Result<MoeSpec, ModelError> {
    // Required here, as llama.cpp requires them for deepseek2.
    h.positive("expert_feed_forward_length")?;
    let shared = if h.usize("expert_shared_count")? > 0 {
        Shared::Plain
    } else {
        Shared::None
    };
    // Without expert_gating_func: DeepSeek V2 / V2.5 files predate the key (softmax);
    // GLM 4.7 Lite is sigmoid.
    let gating = if matches!(cfg.n_layer, 47 | 48) && cfg.n_vocab == 154880 {
        Gating::Sigmoid
    } else {
        Gating::Softmax
    };
    read_moe(h, cfg, gating, false, shared)
}

fn build(ld: &Loader, cfg: &Config) -> Result<Decoder, ModelError> {
    let h = Hparams {
        md: ld.file.metadata(),
        arch: &cfg.arch,
    };
    let ds = DeepSeek2::read(&h, cfg)?;
    let moe = if ds.n_layer_dense_lead < cfg.n_layer {
        Some(moe_spec(&h, cfg)?)
    } else {
        None
    };
    let rope = file_rope(cfg, RopeMode::Norm);
    let scale = kq_scale(cfg, ds.mla.q_head());
    let model = ModelPlan {
        embd_scale: None,
        final_softcap: 0.0,
    };
    build_decoder(ld, cfg, NormKind::Rms, model, |il| {
        let mut attn = plain_attn(cfg, rope.clone(), false);
        attn.params = AttnParams {
            n_head: cfg.n_head,
            scale,
            softcap: 0.0,
            window: 0,
        };
        attn.latent = Some(ds.mla);
        // Leading layers are dense; the rest route to experts (+ the shared ones).
        let ffn = match moe {
            Some(spec) if il >= ds.n_layer_dense_lead => FfnKind::Moe(spec),
            _ => FfnKind::Gated(Glu::SwiGlu),
        };
        Ok(LayerPlan {
            attn,
            ffn,
            residual: ResidualKind::Sequential,
            post_norms: false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kq_scale_without_yarn_is_one_over_sqrt_key_length() {
        let file = gguf::GgufFile::open(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/deepseek2.gguf"),
        )
        .unwrap();
        let cfg = Config::common(
            file.metadata(),
            "deepseek2",
            360,
            NormKind::Rms,
            YarnLogMul::DeepSeek2,
        )
        .unwrap();
        assert_eq!(kq_scale(&cfg, 24), 1.0 / 24f32.sqrt());
    }
}

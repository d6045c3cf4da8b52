//! Memory planning: what a model will cost in RAM before any weight is read, per loading
//! mode, from the GGUF metadata and tensor directory alone.
//!
//! * eager: the whole tensor-data region is copied to the heap (plus the f32 copies of norms
//!   and biases the model decodes at load time).
//! * lazy: weights stay memory-mapped and the forward pass gives each layer's pages back once
//!   the layer is done, so only one layer (or one chunk of the output matrix) is resident at a
//!   time on top of the decoded small tensors.
//!
//! The KV cache figure is exactly what [`kv_cache_bytes`] says: layers x KV heads x (key dim +
//! value dim) x positions x element size (MLA layers cache the compressed latent plus the
//! rope part instead). A sliding-window layer's cache is a ring of llama.cpp's size
//! (`models::windowed_slots`: window + one 512-token micro-batch, padded to 256 cells), so
//! the plan counts that many positions for it, exactly what `models` allocates.

use std::fmt;
use std::str::FromStr;

use gguf::{GgufFile, Metadata, TensorInfo};
use models::KvDtype;

pub use crate::available::{available_memory, Available};

/// How the weights are brought into memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Copied into RAM up front: fastest per token, costs the file size.
    Eager,
    /// Memory-mapped and paged in per layer: resident memory stays near KV cache + scratch.
    Lazy,
    /// Eager when it fits comfortably in the available memory, else lazy.
    Auto,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Eager => "eager",
            LoadMode::Lazy => "lazy",
            LoadMode::Auto => "auto",
        }
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LoadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "eager" => Ok(LoadMode::Eager),
            "lazy" => Ok(LoadMode::Lazy),
            "auto" => Ok(LoadMode::Auto),
            other => Err(format!("expected eager, lazy or auto, got {other:?}")),
        }
    }
}

/// Bytes of one KV cache element.
pub fn kv_elem_bytes(kv: KvDtype) -> u64 {
    match kv {
        KvDtype::F16 => 2,
        KvDtype::F32 => 4,
    }
}

/// The KV cache of a standard (multi-head / grouped-query) attention model:
/// `n_layers x n_kv_heads x (head_dim_k + head_dim_v) x max_seq_len x bytes(kv)`.
pub fn kv_cache_bytes(
    n_layers: u64,
    n_kv_heads: u64,
    head_dim_k: u64,
    head_dim_v: u64,
    max_seq_len: u64,
    kv: KvDtype,
) -> u64 {
    mul(&[
        n_layers,
        n_kv_heads,
        head_dim_k.saturating_add(head_dim_v),
        max_seq_len,
        kv_elem_bytes(kv),
    ])
}

/// Product that saturates instead of overflowing (hostile metadata must not panic).
fn mul(xs: &[u64]) -> u64 {
    xs.iter().fold(1u64, |a, &x| a.saturating_mul(x))
}

/// What is cached per layer and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLayout {
    /// Keys and values of every KV head.
    Heads {
        n_head_kv: u64,
        head_dim_k: u64,
        head_dim_v: u64,
    },
    /// Multi-head latent attention (deepseek2): the compressed KV latent plus the rope part
    /// of the key, shared by all heads; no separate values.
    Latent { kv_lora_rank: u64, n_rot: u64 },
}

impl KvLayout {
    /// Cached elements per layer and position.
    pub fn elems_per_token(&self) -> u64 {
        match *self {
            KvLayout::Heads {
                n_head_kv,
                head_dim_k,
                head_dim_v,
            } => n_head_kv.saturating_mul(head_dim_k.saturating_add(head_dim_v)),
            KvLayout::Latent {
                kv_lora_rank,
                n_rot,
            } => kv_lora_rank.saturating_add(n_rot),
        }
    }
}

/// The hyperparameters that decide memory use, read leniently from `{arch}.*` so the planner
/// also works for architectures the engine cannot run yet.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelShape {
    pub arch: String,
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_head: u64,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    pub n_vocab: u64,
    /// Entries of the tokenizer's vocabulary (`tokenizer.ggml.tokens`; `n_vocab` without).
    pub n_tokens: u64,
    /// Widest FFN hidden activation of one token (dense, or the active experts + shared).
    pub n_ff: u64,
    pub context_length: u64,
    pub kv: KvLayout,
    /// Window of the sliding-window layers (0 = none).
    pub sliding_window: u64,
    pub swa_layers: Vec<bool>,
    /// Experts per MoE layer (0 = dense).
    pub n_expert: u64,
    pub n_expert_used: u64,
}

fn md_err(e: gguf::GgufError) -> String {
    e.to_string()
}

impl ModelShape {
    pub fn from_gguf(file: &GgufFile) -> Result<ModelShape, String> {
        let md = file.metadata();
        let arch = md.get_str("general.architecture").map_err(md_err)?;
        // Every count and size below is checked against the tensors before it sizes anything.
        models::check_shape(md, file.tensors()).map_err(|e| e.to_string())?;
        let n_vocab = match file.tensor("token_embd.weight") {
            Some(t) if t.dims.len() >= 2 => t.dims[1],
            _ => match md.opt_u64(&format!("{arch}.vocab_size")).map_err(md_err)? {
                Some(v) => v,
                None => md
                    .get_str_array("tokenizer.ggml.tokens")
                    .map_err(md_err)?
                    .len() as u64,
            },
        };
        Self::from_metadata(md, n_vocab)
    }

    fn tokenizer_len(md: &Metadata) -> Option<u64> {
        md.get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len() as u64)
    }

    pub fn from_metadata(md: &Metadata, n_vocab: u64) -> Result<ModelShape, String> {
        let arch = md.get_str("general.architecture").map_err(md_err)?;
        let key = |k: &str| format!("{arch}.{k}");
        let get = |k: &str| md.get_u64(&key(k)).map_err(md_err);
        let opt = |k: &str| md.opt_u64(&key(k)).map_err(md_err);
        let n_layer = get("block_count")?;
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        for (k, v) in [
            ("block_count", n_layer),
            ("embedding_length", n_embd),
            ("attention.head_count", n_head),
        ] {
            if v == 0 {
                return Err(format!("metadata key `{arch}.{k}`: must be positive"));
            }
        }
        // Without tensors to compare with (`from_gguf` does), at least refuse layer counts no
        // model has before anything is allocated per layer.
        if n_layer > models::MAX_LAYERS {
            return Err(format!(
                "metadata key `{arch}.block_count`: {n_layer} layers is more than any model has \
                 (at most {})",
                models::MAX_LAYERS
            ));
        }
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        let head_dim_k = opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt("attention.value_length")?.unwrap_or(n_embd / n_head);
        let n_rot = opt("rope.dimension_count")?.unwrap_or(head_dim_k);
        // MLA caches the latent only when the file has the split (absorbable) layout, which
        // key_length_mla marks; older attn_kv_b files cache per-head keys and values.
        let mla = opt("attention.key_length_mla")?.is_some();
        let kv = match opt("attention.kv_lora_rank")? {
            Some(rank) if rank > 0 && mla => KvLayout::Latent {
                kv_lora_rank: rank,
                n_rot,
            },
            _ => KvLayout::Heads {
                n_head_kv,
                head_dim_k,
                head_dim_v,
            },
        };
        let n_expert = opt("expert_count")?.unwrap_or(0);
        let n_expert_used = opt("expert_used_count")?.unwrap_or(0);
        let dense_ff = opt("feed_forward_length")?.unwrap_or(n_embd.saturating_mul(4));
        let n_ff = if n_expert > 0 {
            let per_expert = opt("expert_feed_forward_length")?.unwrap_or(dense_ff);
            let shared = opt("expert_shared_feed_forward_length")?.unwrap_or(
                opt("expert_shared_count")?
                    .unwrap_or(0)
                    .saturating_mul(per_expert),
            );
            dense_ff.max(
                per_expert
                    .saturating_mul(n_expert_used)
                    .saturating_add(shared),
            )
        } else {
            dense_ff
        };
        // The family's own reading (none for architectures `models` does not know).
        let swa = models::sliding_window(md, usize::try_from(n_layer).unwrap_or(usize::MAX))
            .map_err(|e| e.to_string())?;
        let (sliding_window, swa_layers) = (swa.window as u64, swa.layers);
        Ok(ModelShape {
            arch: arch.to_string(),
            n_layer,
            n_embd,
            n_head,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_tokens: Self::tokenizer_len(md).unwrap_or(n_vocab),
            n_ff,
            context_length: get("context_length")?,
            kv,
            sliding_window,
            swa_layers,
            n_expert,
            n_expert_used,
        })
    }

    /// KV cache this engine allocates for `max_seq_len` positions: every layer keeps every
    /// position (sliding-window layers included).
    pub fn kv_bytes(&self, max_seq_len: u64, kv: KvDtype) -> u64 {
        mul(&[
            self.n_layer,
            self.kv.elems_per_token(),
            max_seq_len,
            kv_elem_bytes(kv),
        ])
    }

    /// KV cache as allocated: sliding-window layers hold a ring of
    /// [`models::windowed_slots`] positions, the others every position.
    pub fn kv_bytes_windowed(&self, max_seq_len: u64, kv: KvDtype) -> u64 {
        let per_pos = mul(&[self.kv.elems_per_token(), kv_elem_bytes(kv)]);
        let ring = |seq: u64| {
            let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            let slots = models::windowed_slots(
                clamp(seq),
                clamp(self.sliding_window),
                models::DEFAULT_UBATCH,
            );
            slots as u64
        };
        self.swa_layers
            .iter()
            .map(|&swa| {
                let n = if swa && self.sliding_window > 0 {
                    ring(max_seq_len)
                } else {
                    max_seq_len
                };
                n.saturating_mul(per_pos)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Working buffers of one forward pass over a batch of `n_tokens` (prompts run in
    /// micro-batches of up to `models::DEFAULT_UBATCH` tokens): the per-token activations,
    /// the quantized activation rows, one row of logits.
    pub fn scratch_bytes(&self, n_tokens: u64) -> u64 {
        // u128: hostile metadata can make these products overflow u64; the result saturates.
        let w = |v: u64| v as u128;
        let (qd, vd) = (
            w(self.n_head) * w(self.head_dim_k),
            w(self.n_head) * w(self.head_dim_v),
        );
        let kv_row = match self.kv {
            KvLayout::Heads { .. } => w(self.kv.elems_per_token()),
            KvLayout::Latent { .. } => qd + vd,
        };
        // x, h, o (n_embd); q, attention output; k, v; gate, up (n_ff).
        let floats = 3 * w(self.n_embd) + qd + vd + kv_row + 2 * w(self.n_ff);
        let widest = w(self.n_embd).max(w(self.n_ff)).max(vd);
        // Q8_K is the widest partner type: 292 bytes per 256 values.
        let qrow = widest.div_ceil(256) * 292;
        let total = w(n_tokens) * (floats * 4 + qrow) + w(self.n_vocab) * 4;
        total.min(u64::MAX as u128) as u64
    }
}

/// Sizes read from the tensor directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightStats {
    /// The tensor-data region of every split: what eager loading copies to the heap.
    pub data_bytes: u64,
    /// Header (metadata + tensor directory) bytes of every split.
    pub header_bytes: u64,
    /// f32 copies of the 1-D tensors (norms, biases) made at load time in every mode.
    pub decoded_bytes: u64,
    /// Bytes of the largest `blk.N.*` layer as lazy loading holds it: every matrix, except
    /// that of the stacked expert tensors (`*_exps`) only one expert's slice, since each
    /// chosen expert is given back as soon as it has run.
    pub largest_layer_bytes: u64,
    /// Bytes of the output projection (the tied embedding when there is none).
    pub output_bytes: u64,
    /// Elements of every tensor.
    pub total_params: u64,
    /// Elements and bytes of the stacked expert tensors (`*_exps`), all experts.
    pub expert_params: u64,
    pub expert_bytes: u64,
}

impl WeightStats {
    /// Elements that take part in one token's forward pass: everything but the experts
    /// not chosen (`used` of `n_expert` per MoE layer).
    pub fn active_params(&self, used: u64, n_expert: u64) -> u64 {
        self.total_params
            .saturating_sub(self.expert_params)
            .saturating_add(active_share(self.expert_params, used, n_expert))
    }

    /// Expert bytes one token reads: `used / n_expert` of them.
    pub fn active_expert_bytes(&self, used: u64, n_expert: u64) -> u64 {
        active_share(self.expert_bytes, used, n_expert)
    }
}

fn active_share(all: u64, used: u64, n_expert: u64) -> u64 {
    if n_expert == 0 {
        return all;
    }
    (all as u128 * used.min(n_expert) as u128 / n_expert as u128) as u64
}

/// Lazy mode runs a large matrix (the output projection) in chunks of about this many bytes
/// of weights, giving each chunk's pages back before the next (`compute`'s paged matmul).
pub const LAZY_OUTPUT_CHUNK_BYTES: u64 = models::PAGED_CHUNK_BYTES as u64;

fn is_vector(t: &TensorInfo) -> bool {
    t.dims.iter().skip(1).all(|&d| d == 1)
}

impl WeightStats {
    pub fn from_gguf(file: &GgufFile) -> WeightStats {
        let mut layers: std::collections::HashMap<u64, u64> = Default::default();
        let mut decoded = 0;
        let (mut total_params, mut expert_params, mut expert_bytes) = (0u64, 0u64, 0u64);
        for t in file.tensors() {
            total_params = total_params.saturating_add(t.n_elements());
            if is_vector(t) {
                decoded = t.n_elements().saturating_mul(4).saturating_add(decoded);
                continue;
            }
            // Stacked experts: [cols, rows, n_expert]; lazy loading holds one at a time.
            let mut resident = t.size;
            if t.name.ends_with("_exps.weight") && t.dims.len() == 3 && t.dims[2] > 0 {
                expert_params = expert_params.saturating_add(t.n_elements());
                expert_bytes = expert_bytes.saturating_add(t.size);
                resident = t.size / t.dims[2];
            }
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(il) = layer {
                let e = layers.entry(il).or_default();
                *e = e.saturating_add(resident);
            }
        }
        let output = file
            .tensor("output.weight")
            .or_else(|| file.tensor("token_embd.weight"))
            .map_or(0, |t| t.size);
        WeightStats {
            data_bytes: file.data_bytes(),
            header_bytes: file.file_size() - file.data_bytes(),
            decoded_bytes: decoded,
            largest_layer_bytes: layers.values().copied().max().unwrap_or(0),
            output_bytes: output,
            total_params,
            expert_params,
            expert_bytes,
        }
    }
}

/// Fixed cost of the process: the binary, the allocator, thread stacks in use (measured as
/// the peak RSS of running the tiny fixture models: 7.6 MiB).
pub const BASE_OVERHEAD_BYTES: u64 = 8 << 20;
/// Per vocabulary entry: the metadata arrays as parsed (token strings, scores, types) plus
/// the tokenizer's own tables. Calibrated on SmolLM2 (49k BPE tokens) and Gemma 3 (262k
/// SentencePiece tokens), whose peak RSS beyond weights, KV cache and scratch is 300 +- 30
/// bytes per token.
pub const OVERHEAD_PER_TOKEN: u64 = 300;

/// The estimate for one mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub mode: LoadMode,
    pub max_seq_len: u64,
    pub kv_dtype: KvDtype,
    /// Weight bytes resident at the peak: all of them in eager; in lazy the decoded small
    /// tensors plus the largest set mapped at once (one layer or one output chunk).
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub scratch_bytes: u64,
    pub overhead_bytes: u64,
}

impl MemoryPlan {
    pub fn total(&self) -> u64 {
        [self.kv_bytes, self.scratch_bytes, self.overhead_bytes]
            .iter()
            .fold(self.weights_bytes, |a, &b| a.saturating_add(b))
    }
}

/// Everything needed to plan a model, without loading its weights.
#[derive(Clone, Debug)]
pub struct Planner {
    pub shape: ModelShape,
    pub weights: WeightStats,
    /// Logits of every position are wanted (perplexity), not only the last one's.
    pub all_logits: bool,
    /// Sequences served at once (a server's KV-cache slots), each with its own cache.
    pub slots: u64,
}

impl Planner {
    pub fn from_gguf(file: &GgufFile) -> Result<Planner, String> {
        Ok(Planner {
            shape: ModelShape::from_gguf(file)?,
            weights: WeightStats::from_gguf(file),
            all_logits: false,
            slots: 1,
        })
    }

    /// Estimate for `mode` (Auto is planned as eager, the larger of the two).
    pub fn plan(&self, mode: LoadMode, max_seq_len: u64, kv: KvDtype) -> MemoryPlan {
        let w = &self.weights;
        let weights_bytes = match mode {
            LoadMode::Eager | LoadMode::Auto => w.data_bytes.saturating_add(w.decoded_bytes),
            LoadMode::Lazy => w.decoded_bytes.saturating_add(
                w.largest_layer_bytes
                    .max(w.output_bytes.min(LAZY_OUTPUT_CHUNK_BYTES)),
            ),
        };
        MemoryPlan {
            mode: if mode == LoadMode::Auto {
                LoadMode::Eager
            } else {
                mode
            },
            max_seq_len,
            kv_dtype: kv,
            weights_bytes,
            kv_bytes: self
                .shape
                .kv_bytes_windowed(max_seq_len, kv)
                .saturating_mul(self.slots.max(1)),
            scratch_bytes: self
                .shape
                .scratch_bytes(max_seq_len.min(models::DEFAULT_UBATCH as u64))
                .saturating_add(if self.all_logits {
                    mul(&[max_seq_len.saturating_sub(1), self.shape.n_vocab, 4])
                } else {
                    0
                }),
            overhead_bytes: BASE_OVERHEAD_BYTES
                .saturating_add(OVERHEAD_PER_TOKEN.saturating_mul(self.shape.n_tokens)),
        }
    }

    /// The longest context whose `mode` plan fits in `budget` bytes (0 when none does).
    pub fn max_fitting_seq_len(&self, mode: LoadMode, kv: KvDtype, budget: u64, upto: u64) -> u64 {
        let (mut lo, mut hi) = (0u64, upto);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.plan(mode, mid, kv).total() <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }
}

/// Share of the available memory eager loading may take before auto prefers lazy.
pub const EAGER_COMFORT: f64 = 0.8;

/// The outcome of planning a load against the memory at hand.
#[derive(Clone, Debug)]
pub struct LoadDecision {
    /// Eager or Lazy, never Auto.
    pub mode: LoadMode,
    /// One sentence for the user: what was chosen and why.
    pub reason: String,
    /// Set when the chosen mode is not expected to fit (explicit eager on a tight machine).
    pub warning: Option<String>,
    pub eager: MemoryPlan,
    pub lazy: MemoryPlan,
    pub available: Option<Available>,
}

pub fn fmt_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let f = b as f64;
    if f >= GIB {
        format!("{:.2} GiB", f / GIB)
    } else if f >= MIB {
        format!("{:.1} MiB", f / MIB)
    } else {
        format!("{:.1} KiB", f / 1024.0)
    }
}

fn kv_name(kv: KvDtype) -> &'static str {
    match kv {
        KvDtype::F16 => "f16",
        KvDtype::F32 => "f32",
    }
}

/// Chooses the mode for `requested` and checks that it can fit, or explains what would.
pub fn decide(
    planner: &Planner,
    requested: LoadMode,
    max_seq_len: u64,
    kv: KvDtype,
    available: Option<Available>,
) -> Result<LoadDecision, String> {
    let eager = planner.plan(LoadMode::Eager, max_seq_len, kv);
    let lazy = planner.plan(LoadMode::Lazy, max_seq_len, kv);
    let Some(avail) = available else {
        let (mode, reason) = match requested {
            LoadMode::Auto => (
                LoadMode::Lazy,
                "available memory unknown, so lazy (memory-mapped) to be safe".to_string(),
            ),
            m => (m, format!("{m} as requested")),
        };
        return Ok(LoadDecision {
            mode,
            reason,
            warning: None,
            eager,
            lazy,
            available: None,
        });
    };
    let a = avail.bytes;
    if lazy.total() > a {
        return Err(refusal(planner, &lazy, kv, &avail));
    }
    let comfortable = (a as f64 * EAGER_COMFORT) as u64;
    let (mode, reason, warning) = match requested {
        LoadMode::Auto if eager.total() <= comfortable => (
            LoadMode::Eager,
            format!(
                "eager: {} fits in {} available ({})",
                fmt_bytes(eager.total()),
                fmt_bytes(a),
                avail.source
            ),
            None,
        ),
        LoadMode::Auto => (
            LoadMode::Lazy,
            format!(
                "lazy: eager would need {} of {} available ({}); lazy needs about {}",
                fmt_bytes(eager.total()),
                fmt_bytes(a),
                avail.source,
                fmt_bytes(lazy.total())
            ),
            None,
        ),
        LoadMode::Eager if eager.total() > a => (
            LoadMode::Eager,
            "eager as requested".to_string(),
            Some(format!(
                "eager loading needs about {} but only {} is available ({}); \
                 --load lazy would need about {}",
                fmt_bytes(eager.total()),
                fmt_bytes(a),
                avail.source,
                fmt_bytes(lazy.total())
            )),
        ),
        m => (m, format!("{m} as requested"), None),
    };
    Ok(LoadDecision {
        mode,
        reason,
        warning,
        eager,
        lazy,
        available: Some(avail),
    })
}

fn refusal(planner: &Planner, lazy: &MemoryPlan, kv: KvDtype, avail: &Available) -> String {
    let a = avail.bytes;
    let mut msg = format!(
        "not enough memory: even lazy loading needs about {} (KV cache {} for {} tokens in {}, \
         scratch {}, weights in use {}, overhead {}) but {} is available ({})",
        fmt_bytes(lazy.total()),
        fmt_bytes(lazy.kv_bytes),
        lazy.max_seq_len,
        kv_name(kv),
        fmt_bytes(lazy.scratch_bytes),
        fmt_bytes(lazy.weights_bytes),
        fmt_bytes(lazy.overhead_bytes),
        fmt_bytes(a),
        avail.source
    );
    let mut hints = Vec::new();
    let fit = planner.max_fitting_seq_len(LoadMode::Lazy, kv, a, lazy.max_seq_len);
    if fit > 0 {
        hints.push(format!("--max-seq-len {fit} --load lazy"));
    }
    if kv == KvDtype::F32 {
        let f16 = planner.plan(LoadMode::Lazy, lazy.max_seq_len, KvDtype::F16);
        if f16.total() <= a {
            hints.push(format!(
                "--kv-dtype f16 (needs about {})",
                fmt_bytes(f16.total())
            ));
        } else {
            let fit16 =
                planner.max_fitting_seq_len(LoadMode::Lazy, KvDtype::F16, a, lazy.max_seq_len);
            if fit16 > fit {
                hints.push(format!("--kv-dtype f16 --max-seq-len {fit16} --load lazy"));
            }
        }
    }
    if hints.is_empty() {
        msg.push_str("; the model does not fit even with a 1-token context");
    } else {
        msg.push_str("; would fit with: ");
        msg.push_str(&hints.join(", or "));
    }
    msg
}

/// The context length planning assumes when the caller gives none (as sessions do).
pub fn default_seq_len(shape: &ModelShape) -> u64 {
    shape
        .context_length
        .clamp(1, crate::DEFAULT_MAX_SEQ_LEN as u64)
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;

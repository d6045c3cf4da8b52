//! The hyperparameters checked against the tensor directory, once, before anything is sized
//! from them. A GGUF file comes from a stranger: `{arch}.block_count` = 2^63 or a head length
//! of 2^40 must be an error naming the key, its value and what the tensors say, not an
//! allocation of that size (or a loop of that length) in model setup or memory planning.
//!
//! The checks hold for every architecture (so the memory planner can run them on files this
//! crate cannot load); each family's loader then checks every tensor's exact shape.

use gguf::{Metadata, TensorInfo};

use crate::error::{hparam, ModelError};

/// More layers than any model has by orders of magnitude; [`sliding_window`](crate::sliding_window)
/// and the planner refuse more even when given no tensors to compare with.
pub const MAX_LAYERS: u64 = 1 << 16;

/// Context lengths and windows are 32-bit in llama.cpp; larger values are not a real model's.
pub const MAX_CONTEXT: u64 = u32::MAX as u64;

/// Keys whose value is a tensor dimension (or a count no larger than one), so it cannot
/// exceed the largest dimension of any non-empty tensor in the file.
const DIM_KEYS: &[&str] = &[
    "embedding_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.key_length_mla",
    "attention.value_length_mla",
    "attention.kv_lora_rank",
    "attention.q_lora_rank",
    "rope.dimension_count",
    "expert_count",
    "expert_used_count",
    "expert_shared_count",
    "expert_feed_forward_length",
    "expert_shared_feed_forward_length",
    "expert_group_count",
    "expert_group_used_count",
    "vocab_size",
];

/// Keys that are position counts, bounded by [`MAX_CONTEXT`].
const CONTEXT_KEYS: &[&str] = &[
    "context_length",
    "attention.sliding_window",
    "rope.scaling.original_context_length",
];

/// What the tensor directory says about the model's size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorSummary {
    /// 1 + the largest `N` of the `blk.N.*` tensors (0 without any).
    pub n_blocks: u64,
    /// Largest dimension of any tensor with at least one element.
    pub max_dim: u64,
    /// `name` and `dims[2]` of one stacked expert tensor (`*_exps.weight`), if any.
    pub experts: Option<(String, u64)>,
}

impl TensorSummary {
    pub fn of(tensors: &[TensorInfo]) -> TensorSummary {
        let mut s = TensorSummary::default();
        for t in tensors {
            if let Some(il) = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                s.n_blocks = s.n_blocks.max(il.saturating_add(1));
            }
            if t.dims.iter().all(|&d| d > 0) {
                s.max_dim = s.max_dim.max(t.dims.iter().copied().max().unwrap_or(0));
            }
            if s.experts.is_none() && t.name.ends_with("_exps.weight") && t.dims.len() == 3 {
                s.experts = Some((t.name.clone(), t.dims[2]));
            }
        }
        s
    }
}

/// An integer value of `key`, if the key holds a scalar integer (arrays and other types are
/// left to the typed readers, which give their own errors).
fn int_of(md: &Metadata, key: &str) -> Option<i128> {
    md.get(key).and_then(|v| v.as_integer())
}

/// Checks `{arch}.block_count` and every size-like `{arch}.*` key against `tensors`: no more
/// layers than the `blk.N` tensors hold, no dimension larger than any tensor's, the expert
/// count equal to the stacked expert tensors', context lengths and windows within 32 bits,
/// and (when the file has a token embedding) `embedding_length` equal to its row length.
/// Cheap (one pass over the directory), allocation-free in the metadata values.
pub fn check_shape(md: &Metadata, tensors: &[TensorInfo]) -> Result<(), ModelError> {
    let arch = md.get_str("general.architecture")?;
    let key = |k: &str| format!("{arch}.{k}");
    let t = TensorSummary::of(tensors);

    let bk = key("block_count");
    if let Some(n) = int_of(md, &bk) {
        if n <= 0 {
            return Err(hparam(bk, format!("{n} must be positive")));
        }
        if n as u128 > t.n_blocks as u128 {
            let found = match t.n_blocks {
                0 => "the file has no blk.N tensors".to_string(),
                1 => "the tensors hold 1 layer (blk.0)".to_string(),
                k => format!("the tensors hold {k} layers (blk.0 to blk.{})", k - 1),
            };
            return Err(hparam(bk, format!("{n} layers, but {found}")));
        }
    }
    let lead = key("leading_dense_block_count");
    if let (Some(v), Some(n)) = (int_of(md, &lead), int_of(md, &bk)) {
        if !(0..=n).contains(&v) {
            return Err(hparam(lead, format!("{v} is not within block_count {n}")));
        }
    }
    for k in DIM_KEYS {
        let name = key(k);
        if let Some(v) = int_of(md, &name) {
            if v < 0 {
                return Err(hparam(name, format!("{v} must not be negative")));
            }
            if v as u128 > t.max_dim as u128 {
                return Err(hparam(
                    name,
                    format!(
                        "{v} is larger than any tensor dimension in the file (at most {})",
                        t.max_dim
                    ),
                ));
            }
        }
    }
    for k in CONTEXT_KEYS {
        let name = key(k);
        if let Some(v) = int_of(md, &name) {
            if !(0..=MAX_CONTEXT as i128).contains(&v) {
                return Err(hparam(
                    name,
                    format!("{v} is out of range (0 to {MAX_CONTEXT})"),
                ));
            }
        }
    }
    if let (Some(n), Some((tensor, found))) = (int_of(md, &key("expert_count")), &t.experts) {
        if n != *found as i128 {
            return Err(hparam(
                key("expert_count"),
                format!("{n} experts, but {tensor} holds {found}"),
            ));
        }
    }
    if let (Some(n), Some(embd)) = (
        int_of(md, &key("embedding_length")),
        tensors.iter().find(|t| t.name == "token_embd.weight"),
    ) {
        if let Some(&cols) = embd.dims.first() {
            if n != cols as i128 {
                return Err(hparam(
                    key("embedding_length"),
                    format!("{n}, but token_embd.weight has rows of {cols}"),
                ));
            }
        }
    }
    Ok(())
}

/// [`MAX_LAYERS`] as a check for callers that have no tensors to compare `n_layer` with.
pub(crate) fn check_layer_count(md: &Metadata, n_layer: usize) -> Result<(), ModelError> {
    if n_layer as u64 > MAX_LAYERS {
        let arch = md.get_str("general.architecture").unwrap_or("{arch}");
        return Err(hparam(
            format!("{arch}.block_count"),
            format!("{n_layer} layers is more than any model has (at most {MAX_LAYERS})"),
        ));
    }
    Ok(())
}

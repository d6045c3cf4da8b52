//! CPU operations for transformer forward passes, written to reproduce ggml's CPU backend
//! numerically: same activation quantization in matmuls, same accumulation widths in norms
//! and softmax, same rope angle recurrence, same fp16 GELU table, same flash-attention
//! precision with an F16 KV cache. Nothing here knows about GGUF files or model layouts.

mod attention;
pub mod backend;
mod matmul;
mod ops;
pub mod pool;
mod rope;

pub use attention::{
    attention, attention_many, windowed_slots, AttnCall, AttnParams, KvCache, KvDtype,
};
pub use matmul::{get_rows, matmul, matmul_many, WeightView};
pub use ops::{
    add_bias, add_in_place, geglu, gelu, gelu_scalar, layer_norm, rms_norm, rms_norm_in_place,
    scale, silu, softcap, softmax, swiglu,
};
pub use pool::{default_threads, n_threads, set_threads, MAX_THREADS};
pub use rope::{Rope, RopeMode};

/// Why an operation could not run. Shape errors name what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Quant(#[from] quant::QuantError),
    #[error("tensor type {0} cannot be used as a weight matrix")]
    UnsupportedWeight(quant::GgmlType),
    /// A backend other than this crate's CPU code could not run an operation.
    #[error("{0}")]
    Backend(String),
}

pub(crate) fn shape_err(
    what: &'static str,
    expected: impl ToString,
    found: impl ToString,
) -> ComputeError {
    ComputeError::Shape {
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

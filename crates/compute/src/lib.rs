//! CPU operations for transformer forward passes, written to reproduce ggml's CPU backend
//! numerically: same activation quantization in matmuls, same accumulation widths in norms
//! and softmax, same rope angle recurrence, same fp16 GELU table, same flash-attention
//! precision with an F16 KV cache. Nothing here knows about GGUF files or model layouts.

mod attention;
pub mod backend;
mod matmul;
pub mod moe;
mod ops;
pub mod pool;
mod rope;

pub use attention::{
    attention, attention_many, windowed_slots, AttnCall, AttnParams, KvCache, KvDtype,
};
pub use matmul::{get_rows, matmul, matmul_many, WeightView, PAGED_CHUNK_BYTES};
pub use ops::{
    add_bias, add_in_place, geglu, gelu, gelu_scalar, layer_norm, rms_norm, rms_norm_in_place,
    scale, silu, softcap, softmax, swiglu,
};
pub use pool::{default_threads, n_threads, set_threads, MAX_THREADS};
pub use rope::{Rope, RopeMode};

/// Whether this is an aarch64 build at one of its NEON levels: ggml's aarch64 builds always
/// have FMA, so GCC contracts the scalar `a * b + c` of the ops it does not vectorise (the
/// GELU table, NEOX rope, the one-row flash-attention updates) as x86 SIMD builds do.
pub(crate) fn arm_fma() -> bool {
    use quant::dispatch::SimdLevel;
    matches!(
        quant::dispatch::active_level(),
        SimdLevel::Neon | SimdLevel::Dotprod
    )
}

/// The SIMD level whose arithmetic the elementwise and attention ops reproduce: the quant
/// crate's active level on x86-64. On aarch64 these ops run as ggml's portable build does
/// (unfused, libm `expf`) whatever the level, except where [`arm_fma`] says GCC fuses, SwiGLU
/// (ggml's NEON exp, in `attention::kernels::swiglu`) and the flash-attention score dot (the
/// quant crate's NEON F16 kernel).
pub(crate) fn simd_level() -> quant::dispatch::SimdLevel {
    use quant::dispatch::SimdLevel;
    match quant::dispatch::active_level() {
        l @ (SimdLevel::Avx2 | SimdLevel::Avx512) => l,
        _ => SimdLevel::Scalar,
    }
}

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

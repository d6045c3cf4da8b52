//! GPU backend for torchless through wgpu: Vulkan (NVIDIA, AMD, Intel, Mesa's lavapipe on
//! the CPU), Metal and DX12 from one code base.
//!
//! Weights are uploaded once in their GGUF encoding ([`GpuWeights`], split by whole rows
//! across bindings when larger than the device's storage binding limit) and decoded inside
//! the WGSL kernels 32 values at a time, for every type in [`kernels::WEIGHT_TYPES`]; math
//! is f32 (no `shader-f16` needed; the packed 8-bit dot products below are the exception),
//! the KV cache f16 (packed pairs, read as f16 or with `unpack2x16float`, see below).
//! Operations are recorded into a [`Pass`] and run as one submission.
//!
//! The IQ lattice types read ggml's grids (from `quant`'s tables) from a small storage buffer
//! made once per type. [`GpuModel::load_layers`] can keep only the first layers on the device
//! and run the rest on the CPU backend (`--gpu-layers`).
//!
//! Numerics differ from the CPU backend's by design: the CPU quantizes activations to the
//! weight type's partner (as ggml does), the GPU multiplies f32 activations by the decoded
//! weights, so results agree to a tolerance (`tests/ops.rs` states each), not to the bit.
//!
//! Paths chosen from the adapter when the device opens ([`DeviceOptions`] turns each off,
//! for tests; [`AdapterSummary`]'s Display, `info --backends`, shows what the adapter has):
//! - matrix-vector products (up to [`MATVEC_MAX_TOKENS`] tokens) sum with `subgroupAdd`
//!   where the adapter has wgpu's `SUBGROUP` feature, else through workgroup memory
//!   ([`GpuDevice::uses_subgroups`], `no_subgroups`);
//! - Q8_0 and Q4_0 matrix-vector products use packed 8-bit dot products (`dot4I8Packed`)
//!   where a Vulkan adapter has `shaderIntegerDotProduct` (naga then emits `OpSDot`): the
//!   activations are first quantized on the device to Q8_0 blocks, exactly as the CPU
//!   quantizes them, so these products equal the CPU backend's up to f32 summation order
//!   ([`GpuDevice::uses_int_dot`], `no_int_dot`); elsewhere, and for every other case
//!   (prefill tiles, `matmul_id`), the f32 path runs;
//! - attention reads the f16 KV cache as `f16` values (`enable f16;`,
//!   `attention_kv_f16.wgsl`) where the adapter has `shader-f16`, else as u32 words through
//!   `unpack2x16float` (`attention_kv_u32.wgsl`): the same values either way
//!   ([`GpuDevice::uses_f16`], `no_f16`). All arithmetic stays f32.

mod backend;
mod device;
pub mod kernels;
mod model;
mod pass;
mod pass_int_dot;
mod pass_moe;
mod tensor;

pub use backend::GpuBackend;
pub use device::{list_adapters, AdapterSummary, BackendKind, DeviceOptions, GpuDevice};
pub use model::{GpuModel, GpuSeq, GpuState, GpuWork};
pub use pass::{AttnArgs, Pass, RopeArgs, MATVEC_MAX_TOKENS};
pub use tensor::{GpuKvCache, GpuTensor, GpuWeights, Rows};

/// Why a GPU operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no usable {kind} adapter found: {hint}")]
    NoAdapter { kind: String, hint: &'static str },
    #[error("could not open the GPU device: {0}")]
    Device(String),
    #[error("tensor type {0} has no GPU kernel")]
    Unsupported(quant::GgmlType),
    #[error("GPU shape: {0}")]
    Shape(String),
}

//! GPU backend for torchless through wgpu: Vulkan (NVIDIA, AMD, Intel, Mesa's lavapipe on
//! the CPU), Metal and DX12 from one code base.
//!
//! Weights are uploaded once in their GGUF encoding ([`GpuWeights`], split by whole rows
//! across bindings when larger than the device's storage binding limit) and decoded inside
//! the WGSL kernels 32 values at a time, for every type in [`kernels::WEIGHT_TYPES`]; math
//! is f32 throughout (no `shader-f16` needed), the KV cache f16 (packed pairs, read with
//! `unpack2x16float`). Operations are recorded into a [`Pass`] and run as one submission.
//!
//! The IQ lattice types read ggml's grids (from `quant`'s tables) from a small storage buffer
//! made once per type. [`GpuModel::load_layers`] can keep only the first layers on the device
//! and run the rest on the CPU backend (`--gpu-layers`).
//!
//! Numerics differ from the CPU backend's by design: the CPU quantizes activations to the
//! weight type's partner (as ggml does), the GPU multiplies f32 activations by the decoded
//! weights, so results agree to a tolerance (`tests/ops.rs` states each), not to the bit.

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

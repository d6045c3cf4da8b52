//! What a tensor format is, as one descriptor: its type id, its activation partner, and its
//! reference (scalar, ggml-exact) quantize / dequantize / dot. Each format's file defines its
//! `FORMAT`; [`crate::formats`] collects them, and everything that asks "can this type do X"
//! reads that table instead of matching on types. SIMD kernels are described the same way per
//! instruction set (`x86/`'s `SimdKernels`), and which kernel a matmul uses to follow
//! llama.cpp's summation order is [`crate::order`]'s business.

use crate::dispatch::VecDotFn;
use crate::GgmlType;

/// ggml's `from_float` without an importance matrix: F32 values to blocks.
pub type QuantizeFn = fn(&[f32], &mut [u8]);

/// ggml's `quantize_*` with importance weights: (values, weights, blocks).
pub type WeightedQuantizeFn = fn(&[f32], &[f32], &mut [u8]);

/// One tensor format.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub ty: GgmlType,
    /// The type activations are quantized to before a dot with weights of this type (ggml's
    /// `vec_dot_type`); itself for activation-only formats.
    pub vec_dot_type: GgmlType,
    /// Exactly ggml's `to_float`.
    pub dequantize: fn(&[u8], &mut [f32]),
    /// Exactly the bytes `ggml_quantize_chunk` writes without an importance matrix; `None`
    /// for formats ggml quantizes only with an importance matrix (the IQ lattice types,
    /// which torchless reads but does not write).
    pub quantize: Option<QuantizeFn>,
    /// ggml's quantizer with an importance matrix (`qw`: one weight per element of the row,
    /// the imatrix's column weights); `None` where ggml ignores the weights (then `quantize`
    /// is used).
    pub quantize_weighted: Option<WeightedQuantizeFn>,
    /// The dot with a row of `vec_dot_type` in ggml's portable (scalar) order; `None` for
    /// formats that are only ever activations (Q8_1, Q8_K).
    pub vec_dot: Option<VecDotFn>,
}

//! Tensor types: one module per ggml format, each with its block layout, reference
//! quantize/dequantize and `vec_dot` against its activation partner type
//! (`GgmlType::vec_dot_type`). Everything works on raw little-endian block bytes exactly as
//! they sit in a GGUF file, so weights never need converting on load.

pub mod activation;
pub mod format;
pub mod formats;
pub mod iq_grid;
mod k_common;
mod kernel_set;
pub mod residency;
mod scalar;
mod types;

#[cfg(test)]
mod testkit;

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod iq1;
pub mod iq1_m;
pub mod iq1_s;
mod iq1_search;
pub mod iq2_s;
mod iq2_search;
pub mod iq2_xs;
pub mod iq2_xxs;
pub mod iq3_s;
mod iq3_search;
pub mod iq3_xxs;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_0x8;
pub mod q4_1;
pub mod q4_k;
pub mod q4_kx16;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
pub mod tq1_0;
pub mod tq2_0;

pub use format::Format;
pub use formats::{format, FORMATS};
pub use residency::{Residency, StoreRange, WeightStore};
pub use types::GgmlType;

/// Why a quant operation could not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("tensor type {0} is not supported yet")]
    Unsupported(GgmlType),
    #[error(
        "quantizing to {0} needs an importance matrix, which torchless does not make yet \
         (it reads {0} files)"
    )]
    NoQuantizer(GgmlType),
    #[error("{ty}: row of {n} elements is not a multiple of the block size {block}")]
    NotBlockMultiple {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: buffer of {got} bytes, expected {expected}")]
    WrongLength {
        ty: GgmlType,
        got: usize,
        expected: usize,
    },
}

fn check(ty: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    if !ty.is_supported() {
        return Err(QuantError::Unsupported(ty));
    }
    let expected = ty.row_bytes(n as u64).ok_or(QuantError::NotBlockMultiple {
        ty,
        n,
        block: ty.block_size(),
    })? as usize;
    if bytes != expected {
        return Err(QuantError::WrongLength {
            ty,
            got: bytes,
            expected,
        });
    }
    Ok(())
}

/// Decode `dst.len()` elements of type `ty` from `src` (exactly `ty.row_bytes(dst.len())` bytes).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(ty, dst.len(), src.len())?;
    let f = formats::format(ty).ok_or(QuantError::Unsupported(ty))?;
    (f.dequantize)(src, dst);
    Ok(())
}

/// Encode `src` as type `ty` into `dst` (exactly `ty.row_bytes(src.len())` bytes) with ggml's
/// reference quantizer, byte for byte.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(ty, src.len(), dst.len())?;
    let f = formats::format(ty).ok_or(QuantError::Unsupported(ty))?;
    let quantize = f.quantize.ok_or(QuantError::NoQuantizer(ty))?;
    quantize(src, dst);
    Ok(())
}

/// [`quantize_row`] with an importance matrix, as `ggml_quantize_chunk` with `quant_weights`:
/// `qw` holds one weight per element of the row (an imatrix's column weights). Types whose
/// ggml quantizer ignores the weights (Q8_0, the float and ternary types) quantize as without.
pub fn quantize_row_weighted(
    ty: GgmlType,
    src: &[f32],
    qw: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantError> {
    check(ty, src.len(), dst.len())?;
    let f = formats::format(ty).ok_or(QuantError::Unsupported(ty))?;
    if qw.len() != src.len() {
        return Err(QuantError::WrongLength {
            ty,
            got: qw.len(),
            expected: src.len(),
        });
    }
    match f.quantize_weighted {
        Some(q) => q(src, qw, dst),
        None => f.quantize.ok_or(QuantError::NoQuantizer(ty))?(src, dst),
    }
    Ok(())
}

/// Dot product of one weight row `w` (type `ty`, `n` elements) with an activation row `x`
/// already quantized to `ty.vec_dot_type()`, with the best kernel for this CPU (see
/// [`dispatch`]; `TORCHLESS_SIMD` caps the level: `scalar|avx2|avx512` on x86-64,
/// `scalar|neon|dotprod` on aarch64).
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], x: &[u8]) -> Result<f32, QuantError> {
    check(ty, n, w.len())?;
    check(ty.vec_dot_type(), n, x.len())?;
    // Activation-only types (Q8_1, Q8_K) have no kernel: ggml has no dot with them as weight.
    let kernel = dispatch::vec_dot_fn(ty).ok_or(QuantError::Unsupported(ty))?;
    Ok(kernel(n, w, x))
}

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod dispatch;
pub mod order;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dispatch::{
    vec_dot_fn, vec_dot_w4_fn, vec_dot_x4_fn, SimdLevel, VecDotFn, VecDotW4Fn, VecDotX4Fn,
};

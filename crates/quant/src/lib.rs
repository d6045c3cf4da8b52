//! Tensor types: one module per ggml format, each with its block layout, reference
//! quantize/dequantize and `vec_dot` against its activation partner type.

mod types;

pub use types::GgmlType;

/// Why a quant operation could not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("tensor type {0} is not supported yet")]
    Unsupported(GgmlType),
    #[error("{ty}: row of {n} elements is not a multiple of the block size {block}")]
    NotBlockMultiple { ty: GgmlType, n: usize, block: usize },
    #[error("{ty}: buffer of {got} bytes, expected {expected}")]
    WrongLength { ty: GgmlType, got: usize, expected: usize },
}

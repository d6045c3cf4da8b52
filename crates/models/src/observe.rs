//! An optional look at the activations each weight matrix is multiplied with, for
//! importance matrices (`torchless imatrix`, as llama-imatrix's collector hooks ggml's
//! `mul_mat`). The observer rides in the buffer every matmul already borrows for its
//! quantized activations ([`MatBuf`]), so the blocks need no extra argument, and a forward
//! pass without one pays a branch per matrix.

use std::ops::{Deref, DerefMut};

/// The input rows of one matrix product.
#[derive(Clone, Copy, Debug)]
pub struct MatmulInput<'a> {
    /// The weight tensor's GGUF name (`blk.0.attn_q.weight`, `output.weight`, ...).
    pub weight: &'a str,
    /// For a stack of experts: which one, and how many the stack holds. Its rows are the
    /// tokens routed to it (llama.cpp's `mul_mat_id`).
    pub expert: Option<(usize, usize)>,
    /// `n` rows of the matrix's column count, one per token.
    pub rows: &'a [f32],
    pub n: usize,
}

/// Receives every [`MatmulInput`] of the forward passes of a [`crate::State`] it is set on.
pub trait ActivationObserver: Send {
    fn observe(&mut self, input: MatmulInput<'_>);
}

/// The quantized-activation buffer of the matmuls, plus the observer if one is set.
/// Dereferences to the buffer, so it is passed on to `compute::matmul` as before.
#[derive(Default)]
pub(crate) struct MatBuf {
    q: Vec<u8>,
    pub observer: Option<Box<dyn ActivationObserver>>,
}

impl MatBuf {
    /// Shows `n` rows of `x` about to be multiplied by `weight` to the observer.
    #[inline]
    pub fn observe(&mut self, weight: &str, x: &[f32], n: usize) {
        if let Some(o) = &mut self.observer {
            o.observe(MatmulInput {
                weight,
                expert: None,
                rows: x,
                n,
            });
        }
    }

    /// [`MatBuf::observe`] for expert `expert` of a stack of `count`.
    #[inline]
    pub fn observe_expert(
        &mut self,
        weight: &str,
        (expert, count): (usize, usize),
        x: &[f32],
        n: usize,
    ) {
        if let Some(o) = &mut self.observer {
            o.observe(MatmulInput {
                weight,
                expert: Some((expert, count)),
                rows: x,
                n,
            });
        }
    }
}

impl Deref for MatBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.q
    }
}

impl DerefMut for MatBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.q
    }
}

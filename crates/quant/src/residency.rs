//! Weight residency: whether a matrix's bytes stay in memory between uses.
//!
//! Weights copied into the heap (eager loading) are always resident. Weights read from a
//! memory-mapped file (lazy loading) are paged in by the kernel as the CPU kernels touch
//! them; their holder implements [`Residency`] and the kernels, once an operation is done
//! with a slice of weights, hand the slice back through it so its pages can leave the
//! process's resident set until the next use. The forward pass itself never sees paging.

/// The holder of weight bytes that are paged in on demand (a memory-mapped GGUF file under
/// lazy loading).
pub trait Residency: Sync {
    /// An operation has finished reading `bytes` (a slice of weights this holder lent out):
    /// their pages may leave memory. The slice stays valid; reading it again pages it back.
    fn done_with(&self, bytes: &[u8]);
}

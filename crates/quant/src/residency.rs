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

/// Where a tensor's bytes lie in a [`WeightStore`]: `len` bytes from `start` in part `part`
/// (a GGUF file's split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRange {
    pub part: usize,
    pub start: u64,
    pub len: u64,
}

/// Weight bytes that outlive a model's loading: the GGUF file a model shares (`Arc`) with
/// the backends that run it, so a CPU backend reads the weights where they lie rather than
/// copying them, paged in on demand when the store pages them ([`WeightStore::residency`]).
pub trait WeightStore: Send + Sync {
    /// The bytes at `r`; empty when `r` is outside the store.
    fn bytes(&self, r: StoreRange) -> &[u8];
    /// The hook to hand read bytes back to, when the store pages them in on demand.
    fn residency(&self) -> Option<&dyn Residency>;
}

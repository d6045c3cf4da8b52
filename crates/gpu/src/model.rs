//! A loaded model on the GPU: `models::backend`'s dense decoder over [`GpuBackend`].

use models::backend::{BackendModel, BackendSeq, BackendState, BackendWork};
use models::{Model, ModelError};

use crate::{GpuBackend, GpuDevice};

/// One sequence's KV caches and activation buffers in device memory.
pub type GpuState = BackendState<GpuBackend>;

/// The activations of a batch of several sequences ([`GpuModel::forward_multi`]).
pub type GpuWork = BackendWork<GpuBackend>;

/// One sequence's part of [`GpuModel::forward_multi`].
pub type GpuSeq<'a> = BackendSeq<'a, GpuBackend>;

/// A model whose weights were uploaded once, in their GGUF types.
pub struct GpuModel {
    backend: GpuBackend,
    model: BackendModel<GpuBackend>,
}

impl GpuModel {
    /// Uploads `model`'s weights to `dev` (Q4_0 matrices that `Model::load_owned`
    /// interleaved for the CPU go up in the file's layout).
    pub fn load(model: &Model, dev: GpuDevice) -> Result<GpuModel, ModelError> {
        let backend = GpuBackend::new(dev);
        let model = BackendModel::load(model, &backend)?;
        Ok(GpuModel { backend, model })
    }

    pub fn device(&self) -> &GpuDevice {
        self.backend.device()
    }

    /// Device memory allocated for this model so far: its weights, and the KV caches and
    /// activation buffers of the states made from it.
    pub fn device_bytes(&self) -> u64 {
        self.backend.allocated_bytes()
    }

    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab()
    }

    /// A state for up to `max_seq_len` positions (prompts run in micro-batches of 512).
    pub fn new_state(&self, max_seq_len: usize) -> Result<GpuState, ModelError> {
        self.model
            .new_state(&self.backend, max_seq_len, models::DEFAULT_UBATCH)
    }

    /// Activation buffers for batches of up to `rows` rows (grown when a batch needs more).
    pub fn new_work(&self, rows: usize) -> GpuWork {
        self.model.new_work(&self.backend, rows)
    }

    /// Several sequences in one pass (their rows share every weight read), as
    /// `models::Model::forward_multi`: returns, sequence after sequence, the logit rows each
    /// asked for.
    pub fn forward_multi(
        &self,
        seqs: &mut [GpuSeq],
        work: &mut GpuWork,
    ) -> Result<Vec<f32>, ModelError> {
        self.model.forward_multi(&self.backend, seqs, work)
    }

    /// Runs `tokens` at positions `start_pos..`; the last token's logits, or every token's
    /// with `all_logits`.
    pub fn forward(
        &self,
        state: &mut GpuState,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        self.model
            .forward(&self.backend, state, tokens, start_pos, all_logits)
    }
}

//! A loaded model on the GPU: `models::backend`'s decoder over [`GpuBackend`], whole
//! or split with the CPU (`--gpu-layers N`: the embedding and the first `N` layers on the
//! GPU, the other layers and the output on `compute::backend::Cpu`, the hidden state copied
//! between them once per micro-batch).

use compute::backend::Cpu;
use compute::KvDtype;
use models::backend::{
    BackendModel, BackendSeq, BackendState, BackendWork, SplitModel, SplitSeq, SplitState,
    SplitWork,
};
use models::{Logits, Model, ModelError};

use crate::{GpuBackend, GpuDevice};

// One per model, state or batch buffer set: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Placement {
    Whole(BackendModel<GpuBackend>),
    Split {
        cpu: Cpu,
        model: Box<SplitModel<GpuBackend, Cpu>>,
    },
}

// One per model, state or batch buffer set: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum StateKind {
    Whole(BackendState<GpuBackend>),
    Split(Box<SplitState<GpuBackend, Cpu>>),
}

/// One sequence's KV caches and activation buffers (in device memory, and in host memory
/// for the CPU's layers of a split model).
pub struct GpuState(StateKind);

// One per model, state or batch buffer set: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum WorkKind {
    Whole(BackendWork<GpuBackend>),
    Split(Box<SplitWork<GpuBackend, Cpu>>),
}

/// The activations of a batch of several sequences ([`GpuModel::forward_multi`]).
pub struct GpuWork(WorkKind);

/// One sequence's part of [`GpuModel::forward_multi`].
pub struct GpuSeq<'a> {
    pub state: &'a mut GpuState,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub logits: Logits,
}

/// A model whose weights were uploaded once, in their GGUF types.
pub struct GpuModel {
    backend: GpuBackend,
    model: Placement,
    n_layer: usize,
}

impl GpuState {
    pub fn max_seq_len(&self) -> usize {
        match &self.0 {
            StateKind::Whole(s) => s.max_seq_len(),
            StateKind::Split(s) => s.max_seq_len(),
        }
    }

    /// Positions cached.
    pub fn n_cached(&self) -> usize {
        match &self.0 {
            StateKind::Whole(s) => s.n_cached(),
            StateKind::Split(s) => s.n_cached(),
        }
    }

    /// Forgets every position from `n` on; returns how many stay cached (see
    /// `models::backend::BackendState::truncate`).
    pub fn truncate(&mut self, n: usize) -> usize {
        match &mut self.0 {
            StateKind::Whole(s) => s.truncate(n),
            StateKind::Split(s) => s.truncate(n),
        }
    }
}

fn mismatch() -> ModelError {
    ModelError::Input("a GPU state or work buffer used with another model".into())
}

impl GpuModel {
    /// Uploads `model`'s weights to `dev` (Q4_0 matrices that `Model::load_owned`
    /// interleaved for the CPU go up in the file's layout).
    pub fn load(model: &Model, dev: GpuDevice) -> Result<GpuModel, ModelError> {
        Self::load_layers(model, dev, None)
    }

    /// As [`GpuModel::load`] with only the first `gpu_layers` layers on the GPU (and the
    /// token embedding), the rest and the output projection on the CPU; `None`, or as many
    /// as the model has or more, puts everything on the GPU. Zero is an error: that model
    /// runs on the CPU alone.
    pub fn load_layers(
        model: &Model,
        dev: GpuDevice,
        gpu_layers: Option<usize>,
    ) -> Result<GpuModel, ModelError> {
        let backend = GpuBackend::new(dev);
        let n_layer = model.config().n_layer;
        let model = match gpu_layers {
            Some(0) => {
                return Err(ModelError::Input(
                    "no layers on the GPU: run the model on the CPU".into(),
                ))
            }
            Some(n) if n < n_layer => {
                let cpu = Cpu::new(KvDtype::F16);
                let model = Box::new(SplitModel::load(model, &backend, &cpu, n)?);
                Placement::Split { cpu, model }
            }
            _ => Placement::Whole(BackendModel::load(model, &backend)?),
        };
        Ok(GpuModel {
            backend,
            model,
            n_layer,
        })
    }

    pub fn device(&self) -> &GpuDevice {
        self.backend.device()
    }

    /// Layers on the GPU (the rest run on the CPU).
    pub fn gpu_layers(&self) -> usize {
        match &self.model {
            Placement::Whole(_) => self.n_layer,
            Placement::Split { model, .. } => model.n_front(),
        }
    }

    /// Layers of the model.
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    /// Device memory allocated for this model so far: its weights, and the KV caches and
    /// activation buffers of the states made from it.
    pub fn device_bytes(&self) -> u64 {
        self.backend.allocated_bytes()
    }

    pub fn n_vocab(&self) -> usize {
        match &self.model {
            Placement::Whole(m) => m.n_vocab(),
            Placement::Split { model, .. } => model.n_vocab(),
        }
    }

    /// A state for up to `max_seq_len` positions (prompts run in micro-batches of 512).
    pub fn new_state(&self, max_seq_len: usize) -> Result<GpuState, ModelError> {
        let ub = models::DEFAULT_UBATCH;
        Ok(GpuState(match &self.model {
            Placement::Whole(m) => StateKind::Whole(m.new_state(&self.backend, max_seq_len, ub)?),
            Placement::Split { cpu, model } => StateKind::Split(Box::new(model.new_state(
                (&self.backend, cpu),
                max_seq_len,
                ub,
            )?)),
        }))
    }

    /// Activation buffers for batches of up to `rows` rows (grown when a batch needs more).
    pub fn new_work(&self, rows: usize) -> GpuWork {
        GpuWork(match &self.model {
            Placement::Whole(m) => WorkKind::Whole(m.new_work(&self.backend, rows)),
            Placement::Split { cpu, model } => {
                WorkKind::Split(Box::new(model.new_work((&self.backend, cpu), rows)))
            }
        })
    }

    /// Several sequences in one pass (their rows share every weight read), as
    /// `models::Model::forward_multi`: returns, sequence after sequence, the logit rows each
    /// asked for.
    pub fn forward_multi(
        &self,
        seqs: &mut [GpuSeq],
        work: &mut GpuWork,
    ) -> Result<Vec<f32>, ModelError> {
        match (&self.model, &mut work.0) {
            (Placement::Whole(m), WorkKind::Whole(w)) => {
                let mut v = Vec::with_capacity(seqs.len());
                for q in seqs.iter_mut() {
                    let StateKind::Whole(state) = &mut q.state.0 else {
                        return Err(mismatch());
                    };
                    v.push(BackendSeq {
                        state,
                        tokens: q.tokens,
                        start_pos: q.start_pos,
                        logits: q.logits,
                    });
                }
                m.forward_multi(&self.backend, &mut v, w)
            }
            (Placement::Split { cpu, model }, WorkKind::Split(w)) => {
                let mut v = Vec::with_capacity(seqs.len());
                for q in seqs.iter_mut() {
                    let StateKind::Split(state) = &mut q.state.0 else {
                        return Err(mismatch());
                    };
                    v.push(SplitSeq {
                        state: &mut **state,
                        tokens: q.tokens,
                        start_pos: q.start_pos,
                        logits: q.logits,
                    });
                }
                model.forward_multi((&self.backend, cpu), &mut v, w)
            }
            _ => Err(mismatch()),
        }
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
        match (&self.model, &mut state.0) {
            (Placement::Whole(m), StateKind::Whole(s)) => {
                m.forward(&self.backend, s, tokens, start_pos, all_logits)
            }
            (Placement::Split { cpu, model }, StateKind::Split(s)) => {
                model.forward((&self.backend, cpu), s, tokens, start_pos, all_logits)
            }
            _ => Err(mismatch()),
        }
    }
}

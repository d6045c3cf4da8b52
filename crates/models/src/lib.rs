//! Forward passes of decoder-only LLMs read from GGUF files, numerically matched to
//! llama.cpp's CPU backend. Weights stay in their GGUF encoding, viewed in the memory map.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::sync::Arc::new(gguf::GgufFile::open("model.gguf")?);
//! let model = models::Model::load(file)?;
//! let mut state = model.new_state(512, models::KvDtype::F16);
//! let logits = model.forward(&mut state, &[1, 2, 3], 0, false)?; // n_vocab logits
//! # Ok(()) }
//! ```

pub mod backend;
mod blocks;
mod config;
mod error;
mod families;
mod forward;
mod observe;
mod shape;
mod weights;

use std::sync::Arc;

pub use compute::PAGED_CHUNK_BYTES;
pub use compute::{default_threads, set_threads, windowed_slots, KvDtype, MAX_THREADS};
pub use config::{Config, RopeConfig, RopeScaling};
pub use error::ModelError;
pub use families::{sliding_window, supported_archs, SlidingWindow};
pub use observe::{ActivationObserver, MatmulInput};
pub use shape::{check_shape, TensorSummary, MAX_CONTEXT, MAX_LAYERS};

/// The SIMD level the kernels run at on this CPU (`scalar`, `avx2`, `avx512`), as chosen at
/// run time (or forced with `TORCHLESS_SIMD`).
pub fn kernel_level() -> &'static str {
    quant::dispatch::active_level().name()
}

use compute::KvCache;
use forward::{Decoder, Scratch};
use weights::Loader;

/// A loaded model: hyperparameters plus typed views into the GGUF file it keeps open.
pub struct Model {
    file: Arc<gguf::GgufFile>,
    config: Config,
    decoder: Decoder,
}

/// Tokens per micro-batch by default: llama.cpp's `n_ubatch`.
pub const DEFAULT_UBATCH: usize = 512;

/// How a [`State`] is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// Longest prompt chunk run as one batch; sliding-window caches hold this many
    /// positions beyond their window.
    pub ubatch: usize,
    /// Keep every position in sliding-window layers too (llama.cpp's `--swa-full`): more
    /// memory, but any earlier position can be returned to.
    pub swa_full: bool,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            ubatch: DEFAULT_UBATCH,
            swa_full: false,
        }
    }
}

/// Per-sequence state: the KV cache of every layer and reusable scratch buffers.
pub struct State {
    pub(crate) caches: Vec<KvCache>,
    pub(crate) scratch: Scratch,
    pub(crate) ubatch: usize,
    /// LongRoPE's long factor set is in use (the context is larger than the original one).
    pub(crate) long_context: bool,
    max_seq_len: usize,
}

impl State {
    /// Positions the KV cache can hold.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Positions currently cached.
    pub fn n_cached(&self) -> usize {
        self.caches.first().map_or(0, |c| c.len())
    }

    /// Drops cached keys/values at positions `n_tokens..` and returns how many positions
    /// are kept: `n_tokens` (or fewer if fewer were cached), or 0 when a sliding-window ring
    /// has overwritten keys the next position would see (everything is dropped then, as
    /// llama.cpp does; the caller re-feeds the prefix).
    pub fn truncate(&mut self, n_tokens: usize) -> usize {
        if self.caches.iter().all(|c| c.can_truncate(n_tokens)) {
            for c in &mut self.caches {
                c.truncate(n_tokens);
            }
            self.n_cached()
        } else {
            for c in &mut self.caches {
                c.truncate(0);
            }
            0
        }
    }

    /// Extends this sequence's cache to `n` positions with keys and values copied from
    /// `src`, another sequence of the same model whose first `n` tokens equal this one's
    /// (the caller's promise: the cache does not know its tokens). Returns the positions
    /// cached afterwards: `n`, or the old count, unchanged, when `src` no longer holds them
    /// or the two caches are laid out differently.
    pub fn copy_prefix_from(&mut self, src: &State, n: usize) -> usize {
        let fits = self.caches.len() == src.caches.len()
            && self.long_context == src.long_context
            && (self.caches.iter().zip(&src.caches)).all(|(d, s)| d.can_copy_prefix_from(s, n));
        if fits {
            for (d, s) in self.caches.iter_mut().zip(&src.caches) {
                d.copy_prefix_from(s, n);
            }
        }
        self.n_cached()
    }

    /// Sets (or with `None` removes) the observer that sees the input rows of every weight
    /// matrix product of `Model::forward` on this state (`forward_multi` runs in its
    /// `Workspace`'s buffers, which have none); returns the one it replaces.
    pub fn set_observer(
        &mut self,
        observer: Option<Box<dyn ActivationObserver>>,
    ) -> Option<Box<dyn ActivationObserver>> {
        std::mem::replace(&mut self.scratch.qbuf.observer, observer)
    }

    /// Bytes the KV cache holds once every slot is in use.
    pub fn kv_bytes(&self) -> usize {
        self.caches.iter().map(|c| c.max_bytes()).sum()
    }
}

impl Model {
    /// Loads a model whose tensor bytes are read as they are (memory-mapped or in memory).
    pub fn load(file: Arc<gguf::GgufFile>) -> Result<Model, ModelError> {
        Model::load_interleaved(file, &Default::default())
    }

    /// Loads a model from a file it may still rewrite: when the tensor data is in memory
    /// (eager loading), Q4_0 and Q4_K matrices are first interleaved in place for faster kernels
    /// (`weights::interleave`; same results bit for bit, no extra memory).
    pub fn load_owned(mut file: gguf::GgufFile) -> Result<Model, ModelError> {
        let interleaved = weights::interleave(&mut file);
        Model::load_interleaved(Arc::new(file), &interleaved)
    }

    fn load_interleaved(
        file: Arc<gguf::GgufFile>,
        interleaved: &std::collections::HashSet<String>,
    ) -> Result<Model, ModelError> {
        let md = file.metadata();
        let arch = md.get_str("general.architecture")?.to_string();
        let family = families::find(&arch).ok_or_else(|| ModelError::UnsupportedArch {
            arch: arch.clone(),
            supported: supported_archs().join(", "),
        })?;
        // Every size read below is checked against the tensors first.
        shape::check_shape(md, file.tensors())?;
        let ld = Loader {
            file: &file,
            interleaved,
        };
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        if embd.dims.len() < 2 {
            return Err(ModelError::Shape {
                name: "token_embd.weight".into(),
                expected: vec![0, 0],
                found: embd.dims.clone(),
            });
        }
        let n_vocab = embd.dims[1] as usize;
        let mut config = Config::common(md, &arch, n_vocab, family.norm, family.yarn_log_mul)?;
        let h = config::Hparams { md, arch: &arch };
        let swa = (family.sliding_window)(&h, config.n_layer)?;
        config.sliding_window = swa.window;
        config.swa_layers = swa.layers;
        let decoder = (family.build)(&ld, &config)?;
        Ok(Model {
            file,
            config,
            decoder,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn file(&self) -> &Arc<gguf::GgufFile> {
        &self.file
    }

    /// A fresh KV cache for up to `max_seq_len` positions (memory grows as it fills).
    pub fn new_state(&self, max_seq_len: usize, kv: KvDtype) -> State {
        self.new_state_with(max_seq_len, kv, StateOptions::default())
    }

    /// [`Model::new_state`] with a micro-batch size and sliding-window layout.
    pub fn new_state_with(&self, max_seq_len: usize, kv: KvDtype, o: StateOptions) -> State {
        let ubatch = o.ubatch.max(1);
        // llama.cpp chooses LongRoPE's factor set by its context size, which it pads to a
        // multiple of 256 cells.
        let n_ctx = max_seq_len.max(1).next_multiple_of(256);
        State {
            caches: self.decoder.new_caches(max_seq_len, kv, ubatch, o.swa_full),
            scratch: Scratch::default(),
            ubatch,
            long_context: n_ctx > self.config.rope.n_ctx_orig,
            max_seq_len,
        }
    }

    /// Runs `tokens` at positions `start_pos..` (in micro-batches of the state's `ubatch`, or
    /// one token while decoding). Anything cached at `start_pos` or later is replaced. Returns `n_vocab`
    /// logits for the last token, or `tokens.len() * n_vocab` (row per token) when
    /// `all_logits`.
    pub fn forward(
        &self,
        state: &mut State,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let mut logits = Vec::new();
        self.forward_into(state, tokens, start_pos, all_logits, &mut logits)?;
        Ok(logits)
    }

    /// [`Model::forward`] writing the logits into `logits` (resized as needed). Reusing one
    /// buffer across decode steps keeps the per-token path free of heap allocation.
    pub fn forward_into(
        &self,
        state: &mut State,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        // The one-sequence case of `forward_multi`, with the state's own scratch.
        let mut ws = Workspace(std::mem::take(&mut state.scratch));
        let want = if all_logits {
            Logits::All
        } else {
            Logits::Last
        };
        let mut seqs = [SeqBatch::new(state, tokens, start_pos, want)];
        let r = self.forward_multi(&mut seqs, &mut ws, logits);
        state.scratch = ws.0;
        r
    }

    /// One forward pass for several sequences: the rows of all of them go through every
    /// weight matrix together (the weights are read once per micro-batch for all), each
    /// row is roped at its own position, its keys and values go to its own sequence's cache,
    /// and attention runs per sequence over that cache. A sequence's logits equal what
    /// [`Model::forward`] gives it alone, up to the matmul kernels' choice of tile for a
    /// different row count.
    ///
    /// `logits` gets, sequence after sequence, the rows each asked for ([`Logits::rows`]).
    /// Prompts longer than a state's `ubatch` run in several micro-batches, the `k`-th
    /// chunks of all sequences together.
    pub fn forward_multi(
        &self,
        seqs: &mut [SeqBatch],
        ws: &mut Workspace,
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        for q in seqs.iter_mut() {
            self.check_input(q.state, q.tokens, q.start_pos)?;
        }
        self.decoder.forward(&self.file, seqs, &mut ws.0, logits)
    }

    /// Checks that `tokens` can run at `start_pos` on `state` and drops whatever is cached
    /// from `start_pos` on.
    fn check_input(
        &self,
        state: &mut State,
        tokens: &[u32],
        start_pos: usize,
    ) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if state.caches.len() != self.decoder.layers.len() {
            return Err(ModelError::Input(
                "state was created by a different model".into(),
            ));
        }
        let cached = state.n_cached();
        if start_pos > cached {
            return Err(ModelError::Input(format!(
                "start position {start_pos} leaves a gap: only {cached} positions are cached"
            )));
        }
        let end = start_pos + tokens.len();
        if end > state.max_seq_len {
            return Err(ModelError::Input(format!(
                "positions up to {end} exceed the state's max_seq_len {}",
                state.max_seq_len
            )));
        }
        if state.truncate(start_pos) != start_pos {
            return Err(ModelError::Input(format!(
                "cannot continue from position {start_pos}: the sliding-window cache no longer \
                 holds the keys it needs (it was dropped; start again from position 0)"
            )));
        }
        Ok(())
    }
}

/// Which logits a sequence wants from [`Model::forward_multi`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None: a prompt chunk that is not the end of the prompt.
    None,
    /// The last token's (`n_vocab`).
    Last,
    /// Every token's (`tokens.len() * n_vocab`, row per token).
    All,
}

impl Logits {
    /// Logit rows a sequence of `n_tokens` gets.
    pub fn rows(self, n_tokens: usize) -> usize {
        match self {
            Logits::None => 0,
            Logits::Last => 1,
            Logits::All => n_tokens,
        }
    }
}

/// One sequence's part of a [`Model::forward_multi`] call: `tokens` at positions
/// `start_pos..` of `state` (anything cached there or later is replaced).
pub struct SeqBatch<'a> {
    pub state: &'a mut State,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub logits: Logits,
}

impl<'a> SeqBatch<'a> {
    pub fn new(
        state: &'a mut State,
        tokens: &'a [u32],
        start_pos: usize,
        logits: Logits,
    ) -> SeqBatch<'a> {
        SeqBatch {
            state,
            tokens,
            start_pos,
            logits,
        }
    }
}

/// Working buffers of [`Model::forward_multi`] (activations of every row of a batch),
/// reused across calls so that steps of the same shape do not allocate.
#[derive(Default)]
pub struct Workspace(Scratch);

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::default()
    }
}

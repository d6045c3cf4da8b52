//! The production wiring: a GGUF file becomes a [`LoadedModel`] (weights + tokenizer), which
//! hands out [`Session`]s backed by the real forward pass.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use models::{KvDtype, Model, State};
use tokenizer::Tokenizer;

use crate::constraint::{Constraint, ConstraintSpec, Grammars};
use crate::error::EngineError;
use crate::memory::{self, LoadDecision, LoadMode, Planner};
use crate::perplexity::{perplexity_chunks, ChunkProgress, PerplexityResult};
use crate::session::{LogitsSource, Session, TokenText};

/// Context used when the caller does not choose one: the trained context, capped so a long
/// context model does not reserve gigabytes of KV cache for a short prompt.
pub const DEFAULT_MAX_SEQ_LEN: usize = 4096;

/// Cache settings of a new session.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// `None`: min(trained context, [`DEFAULT_MAX_SEQ_LEN`]).
    pub max_seq_len: Option<usize>,
    pub kv_dtype: KvDtype,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_seq_len: None,
            kv_dtype: KvDtype::F16,
        }
    }
}

/// How to load a model, and what it will be used for (the memory check plans the KV cache of
/// a session with `session`'s settings).
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub mode: LoadMode,
    pub session: SessionOptions,
    /// The model will be asked for the logits of every position (perplexity), which the
    /// memory check then counts.
    pub all_logits: bool,
    /// Sessions that will hold a KV cache at once (a server's `--parallel` slots).
    pub slots: usize,
    /// Where sessions run their forward passes (`--backend`).
    pub backend: crate::device::Backend,
    /// With a GPU backend, how many layers run there (`--gpu-layers`, llama.cpp's
    /// `--n-gpu-layers`): the token embedding and the first `n` layers on the GPU, the other
    /// layers and the output on the CPU. `None`: all of them; `Some(0)`: none (the CPU).
    pub gpu_layers: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mode: LoadMode::Auto,
            session: SessionOptions::default(),
            all_logits: false,
            slots: 1,
            backend: crate::device::Backend::Cpu,
            gpu_layers: None,
        }
    }
}

/// A model file opened for inference. Cheap to share: sessions hold `Arc`s to its parts.
pub struct LoadedModel {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    planner: Planner,
    decision: LoadDecision,
    /// Built on first use: most runs never constrain their output.
    grammars: OnceLock<Result<Arc<Grammars>, String>>,
    /// The model's weights on a GPU, when sessions run there.
    gpu: Option<Arc<crate::device::GpuModel>>,
    /// Where sessions run, for the user ("CPU", "GPU llvmpipe (Vulkan)", and why).
    device: String,
}

impl LoadedModel {
    /// Loads with [`LoadMode::Auto`] and default session settings.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        Self::load_with(path, &LoadOptions::default(), |_, _| {})
    }

    /// Plans memory for `opts` before reading any weight, refuses with
    /// [`EngineError::InsufficientMemory`] when even lazy loading cannot fit, then loads in
    /// the chosen mode. `progress(done, total)` reports bytes copied by eager loading.
    pub fn load_with(
        path: impl AsRef<Path>,
        opts: &LoadOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<Self, EngineError> {
        let path = path.as_ref();
        let load_err = |msg: String| EngineError::Load {
            path: path.display().to_string(),
            msg,
        };
        let (mut file, planner, decision) = open_and_plan(path, opts)?;
        match decision.mode {
            LoadMode::Eager => file
                .load_into_memory(progress)
                .map_err(|e| load_err(e.to_string()))?,
            _ => file.set_release_pages(true),
        }
        let tokenizer = Tokenizer::from_gguf(file.metadata())
            .map_err(|e| load_err(format!("tokenizer: {e}")))?;
        let model = Model::load_owned(file).map_err(|e| load_err(e.to_string()))?;
        let seq = opts
            .session
            .max_seq_len
            .map_or_else(|| memory::default_seq_len(&planner.shape), |n| n as u64);
        let (gpu, device) =
            crate::device::open(opts.backend, opts.gpu_layers, (seq, planner.slots), &model)?;
        Ok(LoadedModel {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            planner,
            decision,
            grammars: OnceLock::new(),
            gpu,
            device,
        })
    }

    /// Where sessions run: `CPU`, or `GPU <adapter> (<API>)`, with the reason when `auto`
    /// fell back to the CPU.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether sessions run on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The model's weights on the GPU, when sessions run there.
    pub(crate) fn gpu_model(&self) -> Option<&Arc<crate::device::GpuModel>> {
        self.gpu.as_ref()
    }

    /// The mode chosen, why, and the memory plans it was chosen from.
    pub fn load_decision(&self) -> &LoadDecision {
        &self.decision
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The forward pass itself, for `torchless bench`, which times it without a session.
    /// Hidden: its type is `models`', which library users cannot name (the public API stays
    /// on engine types).
    #[doc(hidden)]
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn arch(&self) -> &str {
        &self.model.config().arch
    }

    pub fn n_vocab(&self) -> usize {
        self.model.config().n_vocab
    }

    /// Context length the model was trained with.
    pub fn trained_context(&self) -> usize {
        self.model.config().context_length
    }

    pub fn default_max_seq_len(&self) -> usize {
        self.trained_context().clamp(1, DEFAULT_MAX_SEQ_LEN)
    }

    /// `add_special`: add BOS/EOS as the model's metadata asks; `parse_special`: recognise
    /// control-token text such as `<|im_end|>` in `text`.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        self.tokenizer
            .encode(text, add_special, parse_special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Uses `template` instead of the file's chat template (`--chat-template-file`). Call
    /// before any session is created.
    pub fn set_chat_template(&mut self, template: String) -> Result<(), EngineError> {
        let tok = Arc::get_mut(&mut self.tokenizer).ok_or_else(|| {
            EngineError::Tokenizer("the chat template cannot change while sessions run".into())
        })?;
        tok.set_chat_template(Some(template));
        Ok(())
    }

    pub fn has_chat_template(&self) -> bool {
        self.tokenizer.chat_template().is_some()
    }

    /// Renders one user message with the model's chat template, ready for the assistant's
    /// answer; `None` when the model has no template.
    pub fn chat_prompt(&self, user: &str) -> Result<Option<String>, EngineError> {
        if !self.has_chat_template() {
            return Ok(None);
        }
        let messages = [tokenizer::ChatMessage::new("user", user)];
        self.tokenizer
            .apply_chat_template(&messages, true, self.arch())
            .map(Some)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The grammar compiler for this model's vocabulary (built on first call).
    pub fn grammars(&self) -> Result<Arc<Grammars>, EngineError> {
        self.grammars
            .get_or_init(|| {
                Grammars::new(&self.tokenizer)
                    .map(Arc::new)
                    .map_err(|e| match e {
                        EngineError::Constraint(m) => m,
                        other => other.to_string(),
                    })
            })
            .clone()
            .map_err(EngineError::Constraint)
    }

    /// Compiles `spec` for [`crate::GenerateOptions::constraint`]; an invalid schema or
    /// grammar is an [`EngineError::Constraint`] naming the problem.
    pub fn compile_constraint(&self, spec: &ConstraintSpec) -> Result<Constraint, EngineError> {
        self.grammars()?.compile(spec)
    }

    /// Text of `ids` as the user would see it (control tokens omitted).
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.tokenizer.token_to_piece(id, false).unwrap_or_default());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn new_session(&self, opts: &SessionOptions) -> Result<Session, EngineError> {
        let source = self.logits_source(opts)?;
        let text = TokenizerText(self.tokenizer.clone());
        Ok(Session::from_parts(source, Arc::new(text)))
    }

    /// A fresh KV cache with the forward pass on this model's device (CPU or GPU): what a
    /// session computes with, for `torchless bench`, which times it without one.
    pub fn logits_source(
        &self,
        opts: &SessionOptions,
    ) -> Result<Box<dyn LogitsSource>, EngineError> {
        let max = opts.max_seq_len.unwrap_or(self.default_max_seq_len());
        if max == 0 {
            return Err(EngineError::InvalidParam(
                "max-seq-len: must be at least 1".into(),
            ));
        }
        Ok(match &self.gpu {
            // The GPU keeps its KV cache in f16 (`kv_dtype` applies to the CPU's).
            #[cfg(feature = "gpu")]
            Some(g) => Box::new(crate::device::GpuSource {
                state: g
                    .new_state(max)
                    .map_err(|e| EngineError::Backend(e.to_string()))?,
                model: g.clone(),
            }),
            #[cfg(not(feature = "gpu"))]
            Some(g) => match **g {},
            None => Box::new(ModelSource {
                state: self.model.new_state(max, opts.kv_dtype),
                model: self.model.clone(),
            }),
        })
    }

    /// llama-perplexity on `text` with windows of `n_ctx` tokens, at most `max_chunks` of them
    /// (see [`crate::perplexity()`]).
    pub fn perplexity(
        &self,
        text: &str,
        n_ctx: usize,
        kv_dtype: KvDtype,
        max_chunks: Option<usize>,
        progress: impl FnMut(&ChunkProgress),
    ) -> Result<PerplexityResult, EngineError> {
        // llama-perplexity tokenizes with the model's BOS rule and no special-token parsing.
        let tokens = self.tokenize(text, true, false)?;
        let bos = if self.tokenizer.add_bos() {
            self.tokenizer.bos()
        } else {
            None
        };
        let mut source = self.logits_source(&SessionOptions {
            max_seq_len: Some(n_ctx),
            kv_dtype,
        })?;
        perplexity_chunks(source.as_mut(), &tokens, n_ctx, bos, max_chunks, progress)
    }

    /// llama-imatrix on `text` (see [`crate::imatrix`]): the importance matrix and the
    /// perplexity measured on the way. `progress` sees each window and the matrix so far; an
    /// error from it stops the run. CPU only (the observer sits in the CPU forward pass).
    pub fn imatrix(
        &self,
        text: &str,
        opts: &crate::imatrix::ImatrixOptions,
        progress: impl FnMut(&ChunkProgress, &crate::imatrix::Imatrix) -> Result<(), EngineError>,
    ) -> Result<(crate::imatrix::Imatrix, PerplexityResult), EngineError> {
        if self.gpu.is_some() {
            return Err(EngineError::Imatrix(
                "runs on the CPU only (drop --backend)".into(),
            ));
        }
        let tokens = self.tokenize(text, true, false)?;
        let bos = if self.tokenizer.add_bos() {
            self.tokenizer.bos()
        } else {
            None
        };
        crate::imatrix::collect(&self.model, &tokens, bos, opts, progress)
    }
}

/// What [`LoadedModel::load_with`] would decide for `path` and `opts` (mode, reason, both
/// memory plans), from the tensor directory and metadata alone: no weight is read.
pub fn plan_load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadDecision, EngineError> {
    open_and_plan(path.as_ref(), opts).map(|(_, _, decision)| decision)
}

/// Opens the file and plans the load; refuses when even lazy loading cannot fit.
fn open_and_plan(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(gguf::GgufFile, Planner, LoadDecision), EngineError> {
    let load_err = |msg: String| EngineError::Load {
        path: path.display().to_string(),
        msg,
    };
    let file = gguf::GgufFile::open(path).map_err(|e| load_err(e.to_string()))?;
    let mut planner = Planner::from_gguf(&file).map_err(load_err)?;
    planner.all_logits = opts.all_logits;
    planner.slots = opts.slots.max(1) as u64;
    let seq = opts
        .session
        .max_seq_len
        .map_or_else(|| memory::default_seq_len(&planner.shape), |n| n as u64);
    let decision = memory::decide(
        &planner,
        opts.mode,
        seq,
        opts.session.kv_dtype,
        memory::available_memory(),
    )
    .map_err(EngineError::InsufficientMemory)?;
    Ok((file, planner, decision))
}

pub(crate) struct ModelSource {
    pub(crate) model: Arc<Model>,
    pub(crate) state: State,
}

impl LogitsSource for ModelSource {
    fn n_vocab(&self) -> usize {
        self.model.config().n_vocab
    }
    fn max_seq_len(&self) -> usize {
        self.state.max_seq_len()
    }
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, EngineError> {
        self.model
            .forward(&mut self.state, tokens, pos, all_logits)
            .map_err(|e| EngineError::Model(e.to_string()))
    }
    fn forward_into(
        &mut self,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        self.model
            .forward_into(&mut self.state, tokens, pos, all_logits, logits)
            .map_err(|e| EngineError::Model(e.to_string()))
    }
    fn truncate(&mut self, n_tokens: usize) -> usize {
        self.state.truncate(n_tokens)
    }
}

pub(crate) struct TokenizerText(pub(crate) Arc<Tokenizer>);

impl TokenText for TokenizerText {
    fn is_eog(&self, id: u32) -> bool {
        self.0.is_eog(id)
    }
    fn piece(&self, id: u32) -> Vec<u8> {
        // Models may pad the output layer beyond the vocabulary; such ids render as nothing.
        self.0.token_to_piece(id, false).unwrap_or_default()
    }
}

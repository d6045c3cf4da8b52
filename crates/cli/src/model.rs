//! [`Model`]: a loaded GGUF file and the one-call operations on it. Each call runs in a
//! session of its own; [`Model::session`] and [`crate::Chat`] keep one across calls.

use std::path::Path;

use engine::{
    GenerateOptions, GenerationStats, LoadDecision, LoadMode, LoadOptions, LoadedModel,
    PerplexityResult, Session, SessionOptions, TokenEvent,
};

use crate::Error;

/// A model loaded for inference. Shareable across threads (`&Model` is enough for every
/// call); each call gets its own KV cache.
pub struct Model {
    inner: LoadedModel,
    session: SessionOptions,
}

/// The result of [`Model::generate`] or [`Model::stream`].
#[derive(Debug, Clone)]
pub struct Completion {
    /// The generated text (stop strings left out).
    pub text: String,
    /// The generated token ids (an end-of-generation token included).
    pub tokens: Vec<u32>,
    /// Tokens of the prompt that were processed.
    pub prompt_tokens: usize,
    /// Why and how fast generation ended; `None` when the callback stopped it.
    pub stats: Option<GenerationStats>,
}

impl Completion {
    /// OpenAI's `finish_reason`: `"length"` when a token limit or the context ended the
    /// text, else `"stop"` (end of generation, a stop string, or stopped by the caller).
    pub fn finish_reason(&self) -> &'static str {
        match self.stats.as_ref().map(|s| s.stop) {
            Some(engine::StopReason::Limit | engine::StopReason::ContextFull) => "length",
            _ => "stop",
        }
    }
}

impl Model {
    /// Loads `path` into RAM (eager): the fastest per token; costs the file's size in memory.
    /// Refused with the numbers when it cannot fit.
    ///
    /// ```no_run
    /// let model = torchless::Model::load("smollm2-135m-instruct-q4_1.gguf")?;
    /// println!("{} with {} tokens", model.arch(), model.n_vocab());
    /// # Ok::<(), torchless::Error>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        Self::load_with(path, &mode_options(LoadMode::Eager))
    }

    /// Keeps `path` memory-mapped and hands each layer's pages back after use (lazy): memory
    /// stays near KV cache + one layer, even for models larger than RAM; slower per token.
    pub fn load_lazy(path: impl AsRef<Path>) -> Result<Model, Error> {
        Self::load_with(path, &mode_options(LoadMode::Lazy))
    }

    /// Loads a local file with explicit options (mode, context length, KV-cache type).
    ///
    /// ```no_run
    /// use torchless::{KvDtype, LoadMode, LoadOptions, Model, SessionOptions};
    /// let opts = LoadOptions {
    ///     mode: LoadMode::Auto, // eager when it fits in 80% of the available memory
    ///     session: SessionOptions { max_seq_len: Some(2048), kv_dtype: KvDtype::F16 },
    ///     ..Default::default()
    /// };
    /// let model = Model::load_with("model.gguf", &opts)?;
    /// println!("{}", model.load_decision().reason);
    /// # Ok::<(), torchless::Error>(())
    /// ```
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, Error> {
        let inner = LoadedModel::load_with(path, opts, |_, _| {})?;
        Ok(Model {
            inner,
            session: opts.session,
        })
    }

    /// Loads a model named the way the CLI's MODEL argument is: a path, or a Hugging Face
    /// repository `owner/name[:QUANT]` / `owner/name/FILE.gguf`, downloaded into the hub's
    /// cache when missing (see [`crate::download`]).
    pub fn open(spec: &str, opts: &LoadOptions) -> Result<Model, Error> {
        let path = crate::download(spec)?;
        Self::load_with(path, opts)
    }

    /// The engine's model, for the parts of the API the facade does not wrap (e.g.
    /// [`crate::server`], or the batching scheduler).
    pub fn into_engine(self) -> (LoadedModel, SessionOptions) {
        (self.inner, self.session)
    }

    /// Uses `template` (Jinja, as in `tokenizer.chat_template`) instead of the file's chat
    /// template for every later chat call (a template with errors fails those calls, naming
    /// the error).
    pub fn set_chat_template(&mut self, template: impl Into<String>) -> Result<(), Error> {
        Ok(self.inner.set_chat_template(template.into())?)
    }

    /// The engine's model, borrowed.
    pub fn engine(&self) -> &LoadedModel {
        &self.inner
    }

    /// The mode loading chose (eager or lazy), why, and the memory plans behind the choice.
    pub fn load_decision(&self) -> &LoadDecision {
        self.inner.load_decision()
    }

    /// `general.architecture` (`llama`, `qwen3`, `gemma3`, ...).
    pub fn arch(&self) -> &str {
        self.inner.arch()
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.inner.n_vocab()
    }

    /// Tokens a session can hold (the KV cache size chosen at load).
    pub fn max_seq_len(&self) -> usize {
        self.session
            .max_seq_len
            .unwrap_or(self.inner.default_max_seq_len())
    }

    /// Token ids of `text` as llama.cpp tokenizes a prompt: BOS when the model's metadata asks
    /// for it, control-token text (`<|im_end|>`) recognised.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self.inner.tokenize(text, true, true)?)
    }

    /// The text of `ids` as a user sees it (control tokens left out).
    pub fn detokenize(&self, ids: &[u32]) -> String {
        self.inner.detokenize(ids)
    }

    /// One user message rendered with the model's chat template, ready for the answer (the
    /// prompt `torchless run` feeds by default); `None` when the model has no template.
    pub fn chat_prompt(&self, user: &str) -> Result<Option<String>, Error> {
        Ok(self.inner.chat_prompt(user)?)
    }

    /// A fresh session (KV cache) with the load's settings, for the engine's own loop: each
    /// `generate` on it continues the same token sequence.
    pub fn session(&self) -> Result<Session, Error> {
        Ok(self.inner.new_session(&self.session)?)
    }

    /// Continues `prompt` as plain text (no chat template; see [`Model::chat_prompt`]).
    pub fn generate(&self, prompt: &str, opts: &GenerateOptions) -> Result<Completion, Error> {
        self.stream(prompt, opts, |_| true)
    }

    /// [`Model::generate`] with a callback per token: `event.text` is the text it released
    /// (complete UTF-8, stop strings held back). Returning `false` stops the generation.
    pub fn stream(
        &self,
        prompt: &str,
        opts: &GenerateOptions,
        on_token: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<Completion, Error> {
        let ids = self.tokenize(prompt)?;
        self.stream_ids(&ids, opts, on_token)
    }

    /// [`Model::stream`] from token ids, fed as they are (no BOS added).
    pub fn stream_ids(
        &self,
        ids: &[u32],
        opts: &GenerateOptions,
        on_token: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<Completion, Error> {
        let mut session = self.session()?;
        run(&mut session, ids, opts, on_token)
    }

    /// Perplexity of `text` the way `llama-perplexity` measures it: windows of `n_ctx`
    /// tokens, the second half of each scored; at most `max_chunks` windows.
    pub fn perplexity(
        &self,
        text: &str,
        n_ctx: usize,
        max_chunks: Option<usize>,
    ) -> Result<PerplexityResult, Error> {
        Ok(self
            .inner
            .perplexity(text, n_ctx, self.session.kv_dtype, max_chunks, |_| {})?)
    }

    /// Starts a multi-turn chat (see [`crate::Chat`]).
    pub fn chat(&self, system: Option<&str>) -> Result<crate::Chat<'_>, Error> {
        crate::Chat::new(self, system)
    }
}

/// What loading `path` with `opts` would cost and which mode [`LoadMode::Auto`] would choose,
/// from the file's metadata alone (no weight is read): `torchless info --memory`.
///
/// ```no_run
/// let plan = torchless::plan_memory("model.gguf", &Default::default())?;
/// println!("eager {} bytes, lazy {} bytes: {}", plan.eager.total(), plan.lazy.total(), plan.reason);
/// # Ok::<(), torchless::Error>(())
/// ```
pub fn plan_memory(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadDecision, Error> {
    Ok(engine::plan_load(path, opts)?)
}

fn mode_options(mode: LoadMode) -> LoadOptions {
    LoadOptions {
        mode,
        ..Default::default()
    }
}

/// The decode loop shared by [`Model::stream_ids`] and [`crate::Chat`]: the engine's
/// iterator, stopped early when the callback says so.
pub(crate) fn run(
    session: &mut Session,
    ids: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(&TokenEvent) -> bool,
) -> Result<Completion, Error> {
    let mut generation = session.generate(ids, opts)?;
    let prompt_tokens = generation.prompt_tokens();
    let (mut text, mut tokens) = (String::new(), Vec::new());
    let mut stopped = false;
    for event in generation.by_ref() {
        let event = event?;
        text.push_str(&event.text);
        tokens.push(event.id);
        if !on_token(&event) {
            stopped = true;
            break;
        }
    }
    let stats = if stopped { None } else { generation.stats() };
    Ok(Completion {
        text,
        tokens,
        prompt_tokens,
        stats,
    })
}

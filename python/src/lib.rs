//! `torchless._torchless`: the compiled half of the Python package. It stays small: a model,
//! a token stream, `download`. The Python half (`torchless/__init__.py`) builds the
//! friendly API on it (`generate`, `chat`, `create_chat_completion`).
//!
//! Every generation runs on a thread of its own and hands its pieces over a channel, so the
//! interpreter is never held while the engine computes, and the consumer checks for signals
//! between pieces: Ctrl-C raises KeyboardInterrupt, and dropping the stream stops the thread
//! at its next token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use torchless::{
    Completion, Conversation, GenerateOptions, KvDtype, LoadMode, LoadOptions, SamplingParams,
    Segment, Session, SessionOptions,
};

pyo3::create_exception!(
    _torchless,
    TorchlessError,
    PyRuntimeError,
    "An error of the torchless engine (loading, tokenizing, generating); the message is the engine's."
);

fn engine_err(e: impl std::fmt::Display) -> PyErr {
    TorchlessError::new_err(e.to_string())
}

/// How often a waiting consumer looks for Ctrl-C while the engine works (a long prompt's
/// prefill yields no piece for a while).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// A loaded model. `close()` releases it; a generation still running keeps its own reference
/// until it ends.
#[pyclass(module = "torchless._torchless", name = "Model")]
struct PyModel {
    model: Mutex<Option<Arc<torchless::Model>>>,
    /// One generation at a time per model: calls from several threads queue here (off the
    /// interpreter, so they do not block other Python threads).
    running: Arc<Mutex<()>>,
    /// The session chat calls share: clients resend the whole history each time, and the
    /// part of the KV cache it shares with the previous call is kept.
    chat_session: Arc<Mutex<Option<Session>>>,
    closed: Arc<AtomicBool>,
}

/// Sampling settings as Python passes them.
#[derive(Clone)]
struct Params {
    max_tokens: Option<usize>,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    seed: Option<u64>,
    stop: Vec<String>,
}

impl Params {
    fn options(&self) -> PyResult<GenerateOptions> {
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed.unwrap_or_else(torchless::engine::random_seed),
            ..SamplingParams::default()
        };
        sampling
            .validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        if self.max_tokens == Some(0) {
            return Err(PyValueError::new_err(
                "max_tokens must be at least 1 (or None)",
            ));
        }
        Ok(GenerateOptions {
            max_tokens: self.max_tokens,
            sampling,
            stop: self.stop.clone(),
            logprobs: None,
            ..Default::default()
        })
    }
}

/// What a generation thread is asked to do.
enum Job {
    /// Continue the text as it is (no chat template).
    Text(String),
    /// Answer a conversation with the chat template; reasoning kept apart.
    Chat(Conversation),
}

/// What a generation thread sends.
enum Msg {
    /// ("text" | "answer" | "reasoning", piece)
    Piece(&'static str, String),
    Done(Summary),
    Failed(String),
}

struct Summary {
    finish_reason: &'static str,
    prompt_tokens: usize,
    /// Prompt tokens already in the KV cache from an earlier call.
    cached_tokens: usize,
    completion_tokens: usize,
    text: String,
    reasoning: Option<String>,
}

impl Summary {
    fn new(c: &Completion, text: String, reasoning: Option<String>) -> Self {
        Summary {
            finish_reason: c.finish_reason(),
            prompt_tokens: c.prompt_tokens,
            cached_tokens: 0,
            completion_tokens: c.tokens.len(),
            text,
            reasoning,
        }
    }
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (path_or_repo, load = "auto", max_seq_len = None, kv_dtype = "f16", chat_template = None))]
    fn new(
        py: Python<'_>,
        path_or_repo: &str,
        load: &str,
        max_seq_len: Option<usize>,
        kv_dtype: &str,
        chat_template: Option<String>,
    ) -> PyResult<Self> {
        let mode: LoadMode = load
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("load: {e}")))?;
        let kv_dtype = match kv_dtype.to_ascii_lowercase().as_str() {
            "f16" => KvDtype::F16,
            "f32" => KvDtype::F32,
            other => {
                return Err(PyValueError::new_err(format!(
                    "kv_dtype: expected f16 or f32, got {other:?}"
                )))
            }
        };
        if max_seq_len == Some(0) {
            return Err(PyValueError::new_err("max_seq_len must be at least 1"));
        }
        let opts = LoadOptions {
            mode,
            session: SessionOptions {
                max_seq_len,
                kv_dtype,
            },
            ..Default::default()
        };
        let spec = path_or_repo.to_string();
        let model = py
            .detach(move || {
                let mut model = torchless::Model::open(&spec, &opts)?;
                if let Some(t) = chat_template {
                    model.set_chat_template(t)?;
                }
                Ok::<_, torchless::Error>(model)
            })
            .map_err(engine_err)?;
        Ok(PyModel {
            model: Mutex::new(Some(Arc::new(model))),
            running: Arc::new(Mutex::new(())),
            chat_session: Arc::new(Mutex::new(None)),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    fn tokenize(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let model = self.get()?;
        py.detach(|| model.tokenize(text)).map_err(engine_err)
    }

    fn detokenize(&self, ids: Vec<u32>) -> PyResult<String> {
        let model = self.get()?;
        let n_vocab = model.n_vocab();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(PyValueError::new_err(format!(
                "token id {id} is outside the vocabulary of {n_vocab} tokens"
            )));
        }
        Ok(model.detokenize(&ids))
    }

    /// The prompt `torchless run` feeds for one user message (None without a template).
    fn chat_prompt(&self, user: &str) -> PyResult<Option<String>> {
        self.get()?.chat_prompt(user).map_err(engine_err)
    }

    /// Facts about the loaded model, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.get()?;
        let d = PyDict::new(py);
        d.set_item("arch", model.arch())?;
        d.set_item("n_vocab", model.n_vocab())?;
        d.set_item("max_seq_len", model.max_seq_len())?;
        d.set_item("load", model.load_decision().mode.as_str())?;
        d.set_item("load_reason", &model.load_decision().reason)?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop))]
    fn start_text(
        &self,
        prompt: String,
        max_tokens: Option<usize>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Vec<String>,
    ) -> PyResult<TokenStream> {
        let p = Params {
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
        };
        self.start(Job::Text(prompt), &p)
    }

    /// `messages`: (role, content, reasoning) with roles user / assistant; `system` apart.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (system, messages, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop))]
    fn start_chat(
        &self,
        system: Option<String>,
        messages: Vec<(String, String, Option<String>)>,
        max_tokens: Option<usize>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Vec<String>,
    ) -> PyResult<TokenStream> {
        let mut conv = Conversation::new(system);
        for (role, content, reasoning) in messages {
            match role.as_str() {
                "user" => conv.push_user(content),
                "assistant" => conv.push_assistant(content, reasoning),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "message role {other:?}: expected system, user or assistant"
                    )))
                }
            }
        }
        let p = Params {
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
        };
        self.start(Job::Chat(conv), &p)
    }

    /// Releases the model (its memory goes once no generation uses it).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A running chat holds the session; it drops it itself when it sees `closed`
        // (waiting here could deadlock with a stream this thread has not drained).
        if let Ok(mut session) = self.chat_session.try_lock() {
            session.take();
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}

impl PyModel {
    fn get(&self) -> PyResult<Arc<torchless::Model>> {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| TorchlessError::new_err("the model is closed"))
    }

    fn start(&self, job: Job, params: &Params) -> PyResult<TokenStream> {
        let model = self.get()?;
        let opts = params.options()?;
        // A few pieces of slack so the engine need not wait for Python between tokens.
        let (tx, rx) = sync_channel(16);
        let running = self.running.clone();
        let chat_session = self.chat_session.clone();
        let closed = self.closed.clone();
        std::thread::Builder::new()
            .name("torchless-generate".into())
            .spawn(move || {
                let _one_at_a_time = running.lock().unwrap_or_else(PoisonError::into_inner);
                let mut session = chat_session.lock().unwrap_or_else(PoisonError::into_inner);
                let msg = match generate(&model, job, &opts, &mut session, &tx) {
                    Ok(summary) => Msg::Done(summary),
                    Err(e) => Msg::Failed(e.to_string()),
                };
                if closed.load(Ordering::SeqCst) {
                    session.take();
                }
                drop(session);
                let _ = tx.send(msg);
            })
            .map_err(engine_err)?;
        Ok(TokenStream {
            rx: Mutex::new(Some(rx)),
            summary: Mutex::new(None),
        })
    }
}

/// Runs one generation, sending its pieces; stops when the receiver is gone.
fn generate(
    model: &torchless::Model,
    job: Job,
    opts: &GenerateOptions,
    chat_session: &mut Option<Session>,
    tx: &SyncSender<Msg>,
) -> Result<Summary, torchless::Error> {
    let send = |kind, text: &str| text.is_empty() || tx.send(Msg::Piece(kind, text.into())).is_ok();
    match job {
        Job::Text(prompt) => {
            let c = model.stream(&prompt, opts, |ev| send("text", &ev.text))?;
            let text = c.text.clone();
            Ok(Summary::new(&c, text, None))
        }
        Job::Chat(conv) => {
            let session = match chat_session {
                Some(s) => s,
                None => chat_session.insert(model.session()?),
            };
            let r = model.reply_in(session, &conv, opts, |seg| match seg {
                Segment::Answer(t) => send("answer", t),
                Segment::Reasoning(t) => send("reasoning", t),
            })?;
            let mut summary = Summary::new(&r.completion, r.content, r.reasoning);
            // OpenAI counts the whole prompt, the cached part included.
            summary.prompt_tokens += r.reused_tokens;
            summary.cached_tokens = r.reused_tokens;
            Ok(summary)
        }
    }
}

/// The pieces of one generation, as ("text" | "answer" | "reasoning", str) pairs; `summary`
/// once it has ended.
#[pyclass(module = "torchless._torchless")]
struct TokenStream {
    rx: Mutex<Option<Receiver<Msg>>>,
    summary: Mutex<Option<Summary>>,
}

#[pymethods]
impl TokenStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(&'static str, String)>> {
        loop {
            // The lock is taken off the interpreter: whoever holds it may be waiting here.
            let msg = py.detach(|| {
                let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
                rx.as_ref().map(|rx| rx.recv_timeout(SIGNAL_POLL))
            });
            match msg {
                None => return Ok(None),
                Some(Ok(Msg::Piece(kind, text))) => return Ok(Some((kind, text))),
                Some(Ok(Msg::Done(s))) => {
                    *self.summary.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
                    self.close();
                    return Ok(None);
                }
                Some(Ok(Msg::Failed(e))) => {
                    self.close();
                    return Err(TorchlessError::new_err(e));
                }
                Some(Err(RecvTimeoutError::Timeout)) => {
                    if let Err(e) = py.check_signals() {
                        self.close(); // the generation stops at its next token
                        return Err(e);
                    }
                }
                Some(Err(RecvTimeoutError::Disconnected)) => {
                    self.close();
                    return Err(TorchlessError::new_err(
                        "the generation thread stopped unexpectedly",
                    ));
                }
            }
        }
    }

    /// Stops the generation (at its next token).
    fn close(&self) {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// After the end: finish_reason, prompt_tokens, cached_tokens, completion_tokens, text (the answer for
    /// chat), reasoning. None while running or after an early stop.
    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let guard = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = guard.as_ref() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("finish_reason", s.finish_reason)?;
        d.set_item("prompt_tokens", s.prompt_tokens)?;
        d.set_item("cached_tokens", s.cached_tokens)?;
        d.set_item("completion_tokens", s.completion_tokens)?;
        d.set_item("text", &s.text)?;
        d.set_item("reasoning", &s.reasoning)?;
        Ok(Some(d))
    }
}

/// Fetches `spec` (`owner/name`, `owner/name:QUANT`, `owner/name/FILE.gguf`) from the Hugging
/// Face hub into its cache, or finds it there; returns the local path.
#[pyfunction]
fn download(py: Python<'_>, spec: String) -> PyResult<String> {
    py.detach(move || torchless::download(&spec))
        .map(|p| p.display().to_string())
        .map_err(engine_err)
}

/// The default model's path (SmolLM2-135M-Instruct Q4_1), fetched on first use.
#[pyfunction]
fn default_model(py: Python<'_>) -> PyResult<String> {
    py.detach(torchless::default_model)
        .map(|p| p.display().to_string())
        .map_err(engine_err)
}

/// Counts what a chat template holds while it renders: a runaway one fails its call with an
/// error instead of exhausting memory (see `torchless::engine::chat_guard`). It covers the
/// extension's own allocations only, which is where rendering happens.
#[global_allocator]
static ALLOC: torchless::engine::chat_guard::RenderAlloc =
    torchless::engine::chat_guard::RenderAlloc;

#[pymodule]
fn _torchless(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Python must outlive a bad template: the render fails, the interpreter goes on.
    torchless::engine::chat_guard::set_on_stop(torchless::engine::chat_guard::OnStop::Abandon);
    m.add_class::<PyModel>()?;
    m.add_class::<TokenStream>()?;
    m.add_function(wrap_pyfunction!(download, m)?)?;
    m.add_function(wrap_pyfunction!(default_model, m)?)?;
    m.add("TorchlessError", m.py().get_type::<TorchlessError>())?;
    Ok(())
}

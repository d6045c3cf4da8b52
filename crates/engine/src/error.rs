//! One error type for everything the engine reports to its callers.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("invalid parameter {0}")]
    InvalidParam(String),
    #[error("empty prompt: nothing to generate from")]
    EmptyPrompt,
    #[error(
        "prompt of {prompt} tokens does not fit the context of {ctx} tokens \
         ({used} already used); raise --max-seq-len or shorten the prompt"
    )]
    PromptTooLong {
        prompt: usize,
        used: usize,
        ctx: usize,
    },
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    BadToken { id: u32, n_vocab: usize },
    #[error("cannot open model {path}: {msg}")]
    Load { path: String, msg: String },
    #[error("{0}")]
    InsufficientMemory(String),
    #[error("model: {0}")]
    Model(String),
    #[error("backend: {0}")]
    Backend(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("perplexity: {0}")]
    Perplexity(String),
    #[error("imatrix: {0}")]
    Imatrix(String),
    #[error("queue full: {limit} requests are already waiting; retry later")]
    QueueFull { limit: usize },
    #[error("the scheduler has stopped")]
    SchedulerStopped,
    /// A JSON schema or grammar that cannot be compiled, or a constraint failing mid-run.
    #[error("structured output: {0}")]
    Constraint(String),
    #[error("internal error: {0}")]
    Internal(String),
}

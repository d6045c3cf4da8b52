//! engine: sessions, sampling, stop rules and perplexity on top of `models` + `tokenizer`.

pub mod error;
pub mod perplexity;
pub mod sampling;
pub mod session;
pub mod text;

pub use error::EngineError;
pub use perplexity::{perplexity, ChunkProgress, PerplexityResult};
pub use sampling::{random_seed, Sampler, SamplingParams, TokenLogprob};
pub use session::{
    GenerateOptions, Generation, GenerationStats, LogitsSource, Session, StopReason, TokenEvent,
    TokenText,
};

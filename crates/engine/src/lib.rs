//! engine: runs a loaded model — sessions with a KV cache, the sampling chain, stop rules,
//! UTF-8-safe streaming text, and llama.cpp-compatible perplexity. Terminal and HTTP front
//! ends sit on top of this API; nothing here prints.
//!
//! ```no_run
//! use engine::{GenerateOptions, LoadedModel, SamplingParams, SessionOptions};
//!
//! # fn main() -> Result<(), engine::EngineError> {
//! let lm = LoadedModel::load("smollm2-135m-instruct-q4_1.gguf")?;
//! // One user message through the model's chat template (None if it has no template).
//! let prompt = lm.chat_prompt("Write a haiku about the ocean.")?.unwrap();
//! let ids = lm.tokenize(&prompt, true, true)?; // BOS per metadata, control tokens parsed
//!
//! let mut session = lm.new_session(&SessionOptions::default())?; // f16 KV, min(ctx, 4096)
//! let opts = GenerateOptions {
//!     max_tokens: Some(64),
//!     sampling: SamplingParams { seed: 42, ..Default::default() }, // llama.cpp defaults
//!     stop: vec!["\n\n".into()],
//!     logprobs: Some(5),
//!     constraint: None, // or lm.compile_constraint(&engine::ConstraintSpec::JsonObject)?
//!     logit_bias: vec![], // (token id, added to its logit)
//! };
//! // Prefill is one forward call; then each `next()` samples one token.
//! let mut generation = session.generate(&ids, &opts)?;
//! for event in generation.by_ref() {
//!     let event = event?;
//!     print!("{}", event.text); // complete UTF-8, stop strings withheld
//! }
//! let stats = generation.stats().unwrap();
//! eprintln!("{} tokens, {:.1} tok/s, stop: {}", stats.generated_tokens, stats.gen_tps(), stats.stop);
//! # Ok(()) }
//! ```
//!
//! [`Session::generate_with`] is the same loop with a callback. A session keeps its tokens:
//! a later `generate` continues the conversation, [`Session::reset`] empties the cache.
//! [`LoadedModel::perplexity`] reproduces llama-perplexity's numbers.
//!
//! Chat: a [`Conversation`] is re-rendered with the chat template every turn and
//! [`LoadedModel::prepare_turn`] keeps the part of the KV cache the new rendering shares with
//! the session, so a turn only processes its new tokens. Reasoning models are recognised by
//! their `<think>`/`</think>` tokens ([`LoadedModel::thinking_tags`]); a [`ThinkingSplitter`]
//! separates the trace from the answer as tokens stream.
//!
//! The decode loop and perplexity are written against two small traits, [`LogitsSource`] and
//! [`TokenText`], so they are unit-tested with scripted models.

mod available;
pub mod constraint;
pub mod conversation;
pub mod device;
pub mod device_memory;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod imatrix;
pub mod memory;
pub mod model;
pub mod perplexity;
/// GGUF re-quantization with llama-quantize's choices (`torchless quantize`).
pub use quantize as quantization;
pub mod sampling;
pub mod scheduler;
pub mod session;
pub mod text;
pub mod thinking;

pub use constraint::{bounded_whitespace, Constraint, ConstraintSpec, Grammars};
pub use conversation::{Conversation, Message, TurnPrompt};
pub use error::EngineError;
pub use memory::{LoadDecision, LoadMode, MemoryPlan, Planner};
pub use model::{plan_load, LoadOptions, LoadedModel, SessionOptions, DEFAULT_MAX_SEQ_LEN};
pub use models::{default_threads, set_threads, supported_archs, KvDtype, MAX_THREADS};

/// What front ends may read of a model file without running it (`info`, `tokenize`, memory
/// plans, bench headers): the GGUF container, the tokenizer, the cache-layout constants and
/// the kernel level. Front ends depend on `engine` alone; this is their window below it.
pub mod inspect {
    pub use gguf::{
        file_type_name, GgmlType, GgufFile, Metadata, Result as GgufResult, TensorInfo, Value,
    };
    pub use models::{kernel_level, windowed_slots, DEFAULT_UBATCH};
    pub use tokenizer::{ChatMessage, Tokenizer};
}
pub use imatrix::{Imatrix, ImatrixEntry, ImatrixOptions};
pub use perplexity::{perplexity, ChunkProgress, PerplexityResult};
pub use sampling::{random_seed, Sampler, SamplingParams, TokenLogprob};
pub use scheduler::{
    Event, Finish, Request, RequestHandle, Scheduler, SchedulerOptions, SchedulerStats, Timings,
    Usage,
};
pub use session::{
    GenerateOptions, Generation, GenerationStats, LogitsSource, Session, StopReason, TokenEvent,
    TokenText,
};
pub use thinking::{Segment, ThinkingSplitter, ThinkingTags};
/// The allocator guard a binary installs to stop runaway chat templates.
pub use tokenizer::chat_guard;

//! The bridge between HTTP requests and `engine`'s [`Scheduler`] (continuous batching over
//! `--parallel` KV-cache slots, prefix reuse per slot): a request becomes a scheduler
//! request; a blocking forwarder turns its events into answer pieces (reasoning split from
//! the answer for chat) on an async channel. When the client goes away the channel closes,
//! the forwarder drops the request's handle, and the scheduler frees the slot at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use engine::{
    EngineError, Event as SchedEvent, GenerateOptions, LoadedModel, Request, Scheduler,
    SchedulerOptions, SchedulerStats, Segment, SessionOptions, StopReason, ThinkingSplitter,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::ApiError;

/// One generation request.
pub(crate) struct Job {
    pub ids: Vec<u32>,
    /// The rendered chat prompt, when reasoning traces are to be split from the answer.
    pub split_thinking: Option<String>,
    pub opts: GenerateOptions,
    /// A control token whose text the answer should show where it is generated (Mistral's
    /// `[TOOL_CALLS]`, which opens its tool calls): its id and text.
    pub show_token: Option<(u32, &'static str)>,
    pub events: UnboundedSender<Event>,
}

/// A token's logprob and the best alternatives, with their text.
#[derive(Clone, Debug)]
pub(crate) struct TokenInfo {
    pub text: String,
    pub logprob: f64,
    pub top: Vec<(u32, String, f64)>,
}

pub(crate) enum Event {
    /// Text released by one token: the answer part and the reasoning part (either may be
    /// empty).
    Piece {
        content: String,
        reasoning: String,
        token: Option<TokenInfo>,
    },
    Done {
        stop: StopReason,
        prompt_tokens: usize,
        cached_tokens: usize,
        completion_tokens: usize,
        prompt_ms: f64,
        gen_ms: f64,
    },
    Error(ApiError),
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub requests_failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Milliseconds spent on prompts and on generation, summed over requests.
    pub prompt_ms: AtomicU64,
    pub gen_ms: AtomicU64,
    /// Queue wait + prompt, summed: time to first token.
    pub first_token_ms_sum: AtomicU64,
    pub completed: AtomicU64,
}

pub(crate) struct Worker {
    pub model: Arc<LoadedModel>,
    pub metrics: Arc<Metrics>,
    pub max_seq_len: usize,
    sched: Scheduler,
}

impl Worker {
    pub fn start(
        model: LoadedModel,
        session: &SessionOptions,
        parallel: usize,
        queue: usize,
    ) -> Result<Self, EngineError> {
        let model = Arc::new(model);
        let opts = SchedulerOptions {
            n_parallel: parallel.max(1),
            max_seq_len: session.max_seq_len,
            kv_dtype: session.kv_dtype,
            max_queue: queue.max(1),
            ..Default::default()
        };
        let sched = Scheduler::start(model.clone(), opts)?;
        Ok(Worker {
            max_seq_len: sched.max_seq_len(),
            model,
            metrics: Arc::new(Metrics::default()),
            sched,
        })
    }

    pub fn stats(&self) -> SchedulerStats {
        self.sched.stats()
    }

    /// Queues `job`; 503 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let m = self.metrics.clone();
        m.requests.fetch_add(1, Ordering::Relaxed);
        let handle = self
            .sched
            .submit(Request {
                prompt: job.ids,
                options: job.opts,
            })
            .map_err(|e| {
                m.requests_failed.fetch_add(1, Ordering::Relaxed);
                match e {
                    EngineError::QueueFull { .. } => ApiError::busy(format!("{e}; retry shortly")),
                    e => ApiError::from_engine(e),
                }
            })?;
        let model = self.model.clone();
        let tx = job.events;
        let split = job.split_thinking;
        let show = job.show_token;
        tokio::task::spawn_blocking(move || {
            let mut splitter = split.as_deref().and_then(|prompt| {
                model
                    .thinking_tags()
                    .map(|t| ThinkingSplitter::for_prompt(t, prompt))
            });
            let piece = |id: u32| model.detokenize(&[id]);
            let send = |segs: Vec<Segment>, token: Option<TokenInfo>| {
                let (mut content, mut reasoning) = (String::new(), String::new());
                for s in segs {
                    match s {
                        Segment::Answer(t) => content.push_str(&t),
                        Segment::Reasoning(t) => reasoning.push_str(&t),
                    }
                }
                tx.send(Event::Piece {
                    content,
                    reasoning,
                    token,
                })
                .is_ok()
            };
            // Dropping `handle` (on any return) cancels the request in the scheduler.
            for ev in handle {
                match ev {
                    SchedEvent::Token(t) => {
                        m.generated_tokens.fetch_add(1, Ordering::Relaxed);
                        let token = t.logprob.map(|lp| TokenInfo {
                            text: piece(t.id),
                            logprob: lp,
                            top: t
                                .top
                                .iter()
                                .map(|c| (c.id, piece(c.id), c.logprob))
                                .collect(),
                        });
                        let text = match show {
                            Some((id, shown)) if id == t.id => format!("{shown}{}", t.text),
                            _ => t.text,
                        };
                        let segs = match &mut splitter {
                            Some(s) => s.push(t.id, &text),
                            None => vec![Segment::Answer(text)],
                        };
                        if !send(segs, token) {
                            return;
                        }
                    }
                    SchedEvent::Done(f) => {
                        if let Some(s) = &mut splitter {
                            let rest = s.finish();
                            if !rest.is_empty() && !send(rest, None) {
                                return;
                            }
                        }
                        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                        let u = &f.usage;
                        m.completed.fetch_add(1, Ordering::Relaxed);
                        m.prompt_tokens
                            .fetch_add(u.prompt_tokens as u64, Ordering::Relaxed);
                        m.cached_prompt_tokens
                            .fetch_add(u.cached_prompt_tokens as u64, Ordering::Relaxed);
                        m.prompt_ms
                            .fetch_add(ms(f.timings.prompt) as u64, Ordering::Relaxed);
                        m.gen_ms
                            .fetch_add(ms(f.timings.generation) as u64, Ordering::Relaxed);
                        m.first_token_ms_sum.fetch_add(
                            ms(f.timings.queued + f.timings.prompt) as u64,
                            Ordering::Relaxed,
                        );
                        let _ = tx.send(Event::Done {
                            stop: f.stop,
                            prompt_tokens: u.prompt_tokens,
                            cached_tokens: u.cached_prompt_tokens,
                            completion_tokens: u.completion_tokens,
                            prompt_ms: ms(f.timings.prompt),
                            gen_ms: ms(f.timings.generation),
                        });
                        return;
                    }
                    SchedEvent::Error(e) => {
                        m.requests_failed.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Event::Error(ApiError::from_engine(e)));
                        return;
                    }
                }
            }
        });
        Ok(())
    }
}

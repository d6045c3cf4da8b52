//! The model's worker: one thread owns the session (KV cache) and serves queued requests one
//! at a time, reusing the cached prefix a new prompt shares with the previous one (the
//! previous turn of the same chat, a shared system prompt). Events go back to the request's
//! handler over a channel; a handler that is gone (client disconnected) ends its generation
//! at the next token.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use engine::{
    EngineError, GenerateOptions, LoadedModel, Segment, SessionOptions, StopReason,
    ThinkingSplitter,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::ApiError;

/// One generation request.
pub(crate) struct Job {
    pub ids: Vec<u32>,
    /// The rendered chat prompt, when reasoning traces are to be split from the answer.
    pub split_thinking: Option<String>,
    pub opts: GenerateOptions,
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
    /// The prompt has been processed.
    Started {
        prompt_tokens: usize,
        cached_tokens: usize,
    },
    /// Text released by one token: the answer part and the reasoning part (either may be
    /// empty).
    Piece {
        content: String,
        reasoning: String,
        token: Option<TokenInfo>,
    },
    Done {
        stop: StopReason,
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
    /// Milliseconds spent on prompts and on generation, for the rates.
    pub prompt_ms: AtomicU64,
    pub gen_ms: AtomicU64,
    pub first_token_ms_sum: AtomicU64,
    pub queued: AtomicUsize,
    pub busy: AtomicUsize,
}

pub(crate) struct Worker {
    pub model: Arc<LoadedModel>,
    pub metrics: Arc<Metrics>,
    pub max_seq_len: usize,
    jobs: SyncSender<Job>,
}

impl Worker {
    pub fn start(
        model: LoadedModel,
        session: &SessionOptions,
        queue: usize,
    ) -> Result<Self, EngineError> {
        let model = Arc::new(model);
        let mut sess = model.new_session(session)?;
        let max_seq_len = sess.max_seq_len();
        let metrics = Arc::new(Metrics::default());
        let (jobs, rx) = sync_channel::<Job>(queue.max(1));
        let (m, mm) = (model.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("torchless-worker".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    mm.queued.fetch_sub(1, Ordering::Relaxed);
                    mm.busy.store(1, Ordering::Relaxed);
                    run(&m, &mut sess, job, &mm);
                    mm.busy.store(0, Ordering::Relaxed);
                }
            })
            .map_err(|e| EngineError::Internal(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker {
            model,
            metrics,
            max_seq_len,
            jobs,
        })
    }

    /// Queues `job`; 503 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.requests_failed.fetch_add(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => {
                        ApiError::busy("the request queue is full; retry shortly")
                    }
                    TrySendError::Disconnected(_) => {
                        ApiError::internal("the model worker has stopped")
                    }
                })
            }
        }
    }
}

fn run(model: &LoadedModel, session: &mut engine::Session, job: Job, m: &Metrics) {
    let tx = job.events;
    let skip = session.reuse_prefix(&job.ids);
    let t0 = Instant::now();
    let mut generation = match session.generate(&job.ids[skip..], &job.opts) {
        Ok(g) => g,
        Err(e) => {
            m.requests_failed.fetch_add(1, Ordering::Relaxed);
            // The cache may hold a partial prompt now; start clean next time.
            session.reset();
            let _ = tx.send(Event::Error(ApiError::from_engine(e)));
            return;
        }
    };
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let prompt_tokens = job.ids.len();
    m.prompt_tokens
        .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
    m.cached_prompt_tokens
        .fetch_add(skip as u64, Ordering::Relaxed);
    m.prompt_ms.fetch_add(prompt_ms as u64, Ordering::Relaxed);
    if tx
        .send(Event::Started {
            prompt_tokens,
            cached_tokens: skip,
        })
        .is_err()
    {
        return;
    }
    let mut splitter = job.split_thinking.as_deref().and_then(|prompt| {
        model
            .thinking_tags()
            .map(|t| ThinkingSplitter::for_prompt(t, prompt))
    });
    let piece = |id: u32| model.detokenize(&[id]);
    let mut first = true;
    let send_segments = |segs: Vec<Segment>, token: Option<TokenInfo>| {
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
    for ev in generation.by_ref() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let _ = tx.send(Event::Error(ApiError::from_engine(e)));
                return;
            }
        };
        if first {
            first = false;
            m.first_token_ms_sum
                .fetch_add(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        m.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let token = ev.logprob.map(|lp| TokenInfo {
            text: piece(ev.id),
            logprob: lp,
            top: ev
                .top
                .iter()
                .map(|t| (t.id, piece(t.id), t.logprob))
                .collect(),
        });
        let segs = match &mut splitter {
            Some(s) => s.push(ev.id, &ev.text),
            None => vec![Segment::Answer(ev.text.clone())],
        };
        if !send_segments(segs, token) {
            // The client went away: stop here; the session keeps what was generated.
            return;
        }
    }
    if let Some(s) = &mut splitter {
        let rest = s.finish();
        if !rest.is_empty() {
            send_segments(rest, None);
        }
    }
    let Some(stats) = generation.stats() else {
        let _ = tx.send(Event::Error(ApiError::internal(
            "generation ended without stats",
        )));
        return;
    };
    let gen_ms = stats.gen_time.as_secs_f64() * 1e3;
    m.gen_ms.fetch_add(gen_ms as u64, Ordering::Relaxed);
    let _ = tx.send(Event::Done {
        stop: stats.stop,
        completion_tokens: stats.generated_tokens,
        prompt_ms,
        gen_ms,
    });
}

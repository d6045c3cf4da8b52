//! Continuous batching: one worker thread owns the model and serves a queue of requests
//! with `n_parallel` slots, each a KV cache of `max_seq_len` positions.
//!
//! Every step the worker admits queued requests into free slots (a slot whose cached tokens
//! share a prefix with the new prompt keeps them), gives each decoding sequence its one
//! token and the prompts being fed a chunk of what is left of the step's token budget (so a
//! long prompt never stalls the others' decoding), runs all of them through ONE
//! [`models::Model::forward_multi`], samples, and sends each request its events. Sampling,
//! stop rules and streamed text are the [`crate::Session`]'s own, so a request gets the
//! tokens it would get alone. Requests and events travel over std channels (no async
//! runtime), so an HTTP server can wrap this as it likes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use engine::{Event, GenerateOptions, LoadedModel, Request, Scheduler, SchedulerOptions};
//!
//! # fn main() -> Result<(), engine::EngineError> {
//! let lm = Arc::new(LoadedModel::load("smollm2-135m-instruct-q4_1.gguf")?);
//! let sched = Scheduler::start(lm.clone(), SchedulerOptions::default())?;
//! let prompt = lm.tokenize("The sky is", true, false)?;
//! let handle = sched.submit(Request { prompt, options: GenerateOptions::default() })?;
//! for event in handle {
//!     match event {
//!         Event::Token(t) => print!("{}", t.text),
//!         Event::Done(f) => eprintln!("\n{} ({} cached)", f.stop, f.usage.cached_prompt_tokens),
//!         Event::Error(e) => eprintln!("error: {e}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use models::{KvDtype, Logits, SeqBatch, State, Workspace};

use crate::error::EngineError;
use crate::model::{LoadedModel, TokenizerText};
use crate::session::{Emitter, GenerateOptions, StopReason, TokenEvent};

/// How the scheduler is laid out.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerOptions {
    /// Sequences decoded together (slots, each with its own KV cache).
    pub n_parallel: usize,
    /// Positions per slot; `None`: the model's default (min(trained context, 4096)).
    pub max_seq_len: Option<usize>,
    pub kv_dtype: KvDtype,
    /// Requests allowed to wait for a slot; more are refused with [`EngineError::QueueFull`].
    pub max_queue: usize,
    /// Most tokens one step runs: one per decoding sequence, the rest for prompt chunks
    /// (at least `n_parallel`).
    pub step_tokens: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            n_parallel: 4,
            max_seq_len: None,
            kv_dtype: KvDtype::F16,
            max_queue: 64,
            step_tokens: models::DEFAULT_UBATCH,
        }
    }
}

/// A generation to run: prompt token ids and the same options a [`crate::Session`] takes.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
}

/// What a request receives, in order: tokens, then exactly one `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    Token(TokenEvent),
    Done(Finish),
    Error(EngineError),
}

/// The end of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub stop: StopReason,
    pub usage: Usage,
    pub timings: Timings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Leading prompt tokens that were already in the slot's cache (not computed again).
    pub cached_prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Submitted until given a slot.
    pub queued: Duration,
    /// Given a slot until the first token (the prompt's processing, in chunks).
    pub prompt: Duration,
    /// First token until the last.
    pub generation: Duration,
}

/// A snapshot of the scheduler's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerStats {
    pub queued: usize,
    /// Slots serving a request.
    pub active: usize,
    pub n_parallel: usize,
}

/// The receiving end of a request: its events, in order. Dropping it (or [`cancel`]) cancels
/// the request; its slot is freed before the next step.
///
/// [`cancel`]: RequestHandle::cancel
pub struct RequestHandle {
    rx: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl RequestHandle {
    /// The next event; `None` once the request has ended (after its `Done` or `Error`).
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// [`RequestHandle::recv`] waiting at most `timeout`; `Err(())` when nothing came.
    #[allow(clippy::result_unit_err)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Event>, ()> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Ok(Some(e)),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(()),
        }
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        // Wakes an idle worker so a queued request leaves the queue now.
        let _q = self.shared.lock();
        self.shared.wake.notify_all();
    }
}

impl Iterator for RequestHandle {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A request waiting for a slot.
struct Pending {
    prompt: Vec<u32>,
    emit: Emitter,
    tx: Sender<Event>,
    cancel: Arc<AtomicBool>,
    submitted: Instant,
}

struct Queue {
    pending: VecDeque<Pending>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    active: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panicking holder leaves the queue consistent (pushes and pops only).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves requests on one worker thread; dropping it stops the worker (requests still in
/// flight get [`EngineError::SchedulerStopped`]).
pub struct Scheduler {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    opts: SchedulerOptions,
    max_seq_len: usize,
    n_vocab: usize,
}

impl Scheduler {
    /// Allocates the slots and starts the worker.
    pub fn start(lm: Arc<LoadedModel>, opts: SchedulerOptions) -> Result<Scheduler, EngineError> {
        let max_seq_len = opts.max_seq_len.unwrap_or(lm.default_max_seq_len());
        if max_seq_len == 0 || opts.n_parallel == 0 {
            return Err(EngineError::InvalidParam(
                "scheduler: max-seq-len and parallel must be at least 1".into(),
            ));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            active: AtomicUsize::new(0),
        });
        let slots = (0..opts.n_parallel)
            .map(|_| {
                Ok(Slot {
                    state: SlotState::new(&lm, max_seq_len, opts.kv_dtype)?,
                    tokens: Vec::new(),
                    job: None,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let n_vocab = lm.n_vocab();
        let worker = Worker {
            text: TokenizerText(lm.tokenizer().clone()),
            lm,
            shared: shared.clone(),
            slots,
            step_tokens: opts.step_tokens.max(opts.n_parallel),
            max_seq_len,
        };
        let handle = std::thread::Builder::new()
            .name("torchless-scheduler".into())
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Internal(format!("cannot start the scheduler: {e}")))?;
        Ok(Scheduler {
            shared,
            worker: Some(handle),
            opts,
            max_seq_len,
            n_vocab,
        })
    }

    /// Queues a request. Refused at once when it cannot run (empty prompt, unknown token,
    /// prompt longer than a slot, invalid sampling settings) or the queue is full.
    pub fn submit(&self, req: Request) -> Result<RequestHandle, EngineError> {
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&id) = req.prompt.iter().find(|&&id| id as usize >= self.n_vocab) {
            return Err(EngineError::BadToken {
                id,
                n_vocab: self.n_vocab,
            });
        }
        if req.prompt.len() > self.max_seq_len {
            return Err(EngineError::PromptTooLong {
                prompt: req.prompt.len(),
                used: 0,
                ctx: self.max_seq_len,
            });
        }
        let emit = Emitter::new(&req.options)?;
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut q = self.shared.lock();
        if q.stop {
            return Err(EngineError::SchedulerStopped);
        }
        if q.pending.len() >= self.opts.max_queue {
            return Err(EngineError::QueueFull {
                limit: self.opts.max_queue,
            });
        }
        q.pending.push_back(Pending {
            prompt: req.prompt,
            emit,
            tx,
            cancel: cancel.clone(),
            submitted: Instant::now(),
        });
        self.shared.wake.notify_all();
        drop(q);
        Ok(RequestHandle {
            rx,
            cancel,
            shared: self.shared.clone(),
        })
    }

    pub fn stats(&self) -> SchedulerStats {
        let queued = self.shared.lock().pending.len();
        SchedulerStats {
            queued,
            active: self.shared.active.load(Ordering::SeqCst),
            n_parallel: self.opts.n_parallel,
        }
    }

    /// Positions each slot holds (the longest prompt plus generation).
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// A request being served in a slot.
struct Job {
    prompt: Vec<u32>,
    emit: Emitter,
    tx: Sender<Event>,
    cancel: Arc<AtomicBool>,
    cached: usize,
    /// The last sampled token, fed in the next step.
    next: Option<u32>,
    submitted: Instant,
    admitted: Instant,
    first_token: Option<Instant>,
}

/// A slot's KV cache: on the CPU, or on the GPU when the model runs there (the GPU keeps
/// it in f16 whatever `kv_dtype` says, as its sessions do).
enum SlotState {
    Cpu(State),
    #[cfg(feature = "gpu")]
    Gpu(gpu::GpuState),
}

impl SlotState {
    fn new(lm: &LoadedModel, max_seq_len: usize, kv: KvDtype) -> Result<SlotState, EngineError> {
        Ok(match lm.gpu_model() {
            #[cfg(feature = "gpu")]
            Some(g) => SlotState::Gpu(
                g.new_state(max_seq_len)
                    .map_err(|e| EngineError::Backend(e.to_string()))?,
            ),
            #[cfg(not(feature = "gpu"))]
            Some(g) => match **g {},
            None => SlotState::Cpu(lm.model().new_state(max_seq_len, kv)),
        })
    }

    fn truncate(&mut self, n: usize) -> usize {
        match self {
            SlotState::Cpu(s) => s.truncate(n),
            #[cfg(feature = "gpu")]
            SlotState::Gpu(s) => s.truncate(n),
        }
    }

    #[cfg(feature = "gpu")]
    fn n_cached(&self) -> usize {
        match self {
            SlotState::Cpu(s) => s.n_cached(),
            #[cfg(feature = "gpu")]
            SlotState::Gpu(s) => s.n_cached(),
        }
    }

    /// [`State::copy_prefix_from`] on the CPU; the GPU's caches are not copied between
    /// slots yet, so there every slot computes its own prompt.
    fn copy_prefix_from(&mut self, src: &SlotState, n: usize) -> usize {
        match (self, src) {
            (SlotState::Cpu(d), SlotState::Cpu(s)) => d.copy_prefix_from(s, n),
            #[cfg(feature = "gpu")]
            (d, _) => d.n_cached(),
        }
    }
}

/// The forward pass's buffers, kept across steps.
#[derive(Default)]
struct Work {
    ws: Workspace,
    #[cfg(feature = "gpu")]
    gpu: Option<gpu::GpuWork>,
}

/// The sequences of one step, on the model's device.
#[derive(Default)]
struct Batch<'a> {
    cpu: Vec<SeqBatch<'a>>,
    #[cfg(feature = "gpu")]
    gpu: Vec<gpu::GpuSeq<'a>>,
}

impl<'a> Batch<'a> {
    fn push(&mut self, state: &'a mut SlotState, input: &'a [u32], pos: usize, want: Logits) {
        match state {
            SlotState::Cpu(s) => self.cpu.push(SeqBatch::new(s, input, pos, want)),
            #[cfg(feature = "gpu")]
            SlotState::Gpu(s) => self.gpu.push(gpu::GpuSeq {
                state: s,
                tokens: input,
                start_pos: pos,
                logits: want,
            }),
        }
    }

    /// One forward pass over the step's sequences; their logit rows into `logits`.
    fn run(&mut self, lm: &LoadedModel, w: &mut Work, logits: &mut Vec<f32>) -> Result<(), String> {
        #[cfg(feature = "gpu")]
        if let Some(g) = lm.gpu_model().filter(|_| !self.gpu.is_empty()) {
            let work = w.gpu.get_or_insert_with(|| g.new_work(1));
            *logits = g
                .forward_multi(&mut self.gpu, work)
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        lm.model()
            .forward_multi(&mut self.cpu, &mut w.ws, logits)
            .map_err(|e| e.to_string())
    }
}

/// Shortest run of prompt tokens worth waiting a step for while another prompt computes
/// them (a system prompt, not the few opening tokens every chat template writes).
const SHARE_MIN: usize = 16;

/// How many leading tokens of `prompt` can come from a cache holding `tokens`: their
/// common prefix, short of the last prompt token, which is always fed (its logits give the
/// first token).
fn reusable(tokens: &[u32], prompt: &[u32]) -> usize {
    let n = tokens
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    n.min(prompt.len() - 1)
}

/// Slot `a` mutably and slot `b` shared (`a != b`).
fn two_slots(slots: &mut [Slot], a: usize, b: usize) -> (&mut Slot, &Slot) {
    if a < b {
        let (l, r) = slots.split_at_mut(b);
        (&mut l[a], &r[0])
    } else {
        let (l, r) = slots.split_at_mut(a);
        (&mut r[0], &l[b])
    }
}

/// A KV cache and the tokens in it (kept after a request ends, for prefix reuse).
struct Slot {
    state: SlotState,
    tokens: Vec<u32>,
    job: Option<Job>,
}

impl Slot {
    /// Tokens this step feeds: the sampled token while decoding, else the next prompt chunk
    /// of at most `budget` tokens, and whether the step ends the prompt (logits wanted).
    fn input(&self, budget: usize) -> (&[u32], bool) {
        let job = self.job.as_ref().expect("an active slot");
        match &job.next {
            Some(t) => (std::slice::from_ref(t), true),
            None => {
                let rest = &job.prompt[self.tokens.len()..];
                let n = rest.len().min(budget);
                (&rest[..n], n == rest.len())
            }
        }
    }
}

struct Worker {
    lm: Arc<LoadedModel>,
    text: TokenizerText,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    step_tokens: usize,
    max_seq_len: usize,
}

impl Worker {
    fn run(mut self) {
        let mut ws = Work::default();
        let mut logits = Vec::new();
        while self.admit() {
            self.drop_cancelled();
            self.step(&mut ws, &mut logits);
        }
        self.stop();
    }

    /// Moves queued requests into free slots; waits while there is nothing to do. `false`
    /// once the scheduler is stopping.
    fn admit(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut q = shared.lock();
        loop {
            if q.stop {
                return false;
            }
            q.pending.retain(|p| !p.cancel.load(Ordering::Relaxed));
            while self.slots.iter().any(|s| s.job.is_none()) {
                let Some(p) = q.pending.pop_front() else {
                    break;
                };
                self.start_job(p);
            }
            if self.slots.iter().any(|s| s.job.is_some()) {
                return true;
            }
            q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Gives `p` the free slot whose cache shares the longest prefix with its prompt (ties:
    /// the one holding the fewest tokens, to keep longer caches for later), keeping that
    /// prefix. At least one prompt token is always fed: its logits give the first token.
    fn start_job(&mut self, p: Pending) {
        let common = |s: &Slot| reusable(&s.tokens, &p.prompt);
        let (i, keep) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .map(|(i, s)| (i, common(s), s.tokens.len()))
            .max_by_key(|&(i, c, len)| (c, std::cmp::Reverse(len), std::cmp::Reverse(i)))
            .map(|(i, c, _)| (i, c))
            .expect("a free slot");
        let slot = &mut self.slots[i];
        // 0 when a sliding-window ring can no longer go back that far.
        let kept = slot.state.truncate(keep);
        slot.tokens.truncate(kept);
        slot.job = Some(Job {
            prompt: p.prompt,
            emit: p.emit,
            tx: p.tx,
            cancel: p.cancel,
            cached: kept,
            next: None,
            submitted: p.submitted,
            admitted: Instant::now(),
            first_token: None,
        });
        self.shared.active.fetch_add(1, Ordering::SeqCst);
    }

    /// Frees the slots of requests whose receiver is gone.
    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(j) = &self.slots[i].job {
                if j.cancel.load(Ordering::Relaxed) {
                    self.finish(i);
                }
            }
        }
    }

    /// Takes the job out of slot `i`, the slot counted free before the caller tells the
    /// request it ended.
    fn finish(&mut self, i: usize) -> Job {
        let job = self.slots[i].job.take().expect("an active slot");
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        job
    }

    /// Prompts that start with tokens another slot already holds (a system prompt shared by
    /// concurrent requests, a conversation forked from another) copy those keys and values
    /// instead of computing them. A prompt whose next [`SHARE_MIN`] or more tokens an
    /// earlier-admitted prompt will compute waits for it, so requests arriving together
    /// with one system prompt compute it once. Returns which slots wait this step.
    fn share_prefixes(&mut self) -> Vec<bool> {
        let mut waiting = vec![false; self.slots.len()];
        let mut prompting: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].job.as_ref().is_some_and(|j| j.next.is_none()))
            .collect();
        prompting.sort_by_key(|&i| self.slots[i].job.as_ref().unwrap().admitted);
        for (k, &b) in prompting.iter().enumerate() {
            let prompt = &self.slots[b].job.as_ref().unwrap().prompt;
            let have = self.slots[b].tokens.len();
            let source = (0..self.slots.len())
                .filter(|&a| a != b)
                .map(|a| (reusable(&self.slots[a].tokens, prompt), a))
                .max();
            let mut now = have;
            if let Some((n, a)) = source.filter(|&(n, _)| n > have) {
                let (dst, src) = two_slots(&mut self.slots, b, a);
                now = dst.state.copy_prefix_from(&src.state, n);
                if now > have {
                    let job = dst.job.as_mut().unwrap();
                    dst.tokens.extend_from_slice(&job.prompt[have..now]);
                    job.cached += now - have;
                }
            }
            let prompt = &self.slots[b].job.as_ref().unwrap().prompt;
            // Only where keys and values can be copied (not yet between GPU slots).
            let copies = matches!(self.slots[b].state, SlotState::Cpu(_));
            waiting[b] = copies
                && prompting[..k].iter().any(|&a| {
                    let other = &self.slots[a];
                    let n = reusable(&other.job.as_ref().unwrap().prompt, prompt);
                    n >= now + SHARE_MIN && other.tokens.len() < n
                });
        }
        waiting
    }

    /// One forward pass for every active slot, then sampling and events.
    fn step(&mut self, ws: &mut Work, logits: &mut Vec<f32>) {
        // Decoding sequences take one token each; prompts share the rest of the budget in
        // the order they were admitted.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].job.is_some())
            .collect();
        order.sort_by_key(|&i| {
            let j = self.slots[i].job.as_ref().unwrap();
            (j.next.is_none(), j.admitted)
        });
        let waiting = self.share_prefixes();
        let mut budget = self.step_tokens;
        let mut fed = vec![(0usize, false); self.slots.len()];
        for &i in order.iter().filter(|&&i| !waiting[i]) {
            let (tokens, last) = self.slots[i].input(budget);
            budget -= tokens.len();
            fed[i] = (tokens.len(), last);
        }
        let mut batch = Batch::default();
        let mut ran = Vec::new();
        // Constrained sequences that sample this step: their masks are computed on a helper
        // thread while the forward pass runs.
        let mut masks_ahead = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let (n, last) = fed[i];
            if n == 0 {
                continue;
            }
            let Slot { state, tokens, job } = slot;
            let Job {
                next, prompt, emit, ..
            } = job.as_mut().unwrap();
            let input = match &*next {
                Some(t) => std::slice::from_ref(t),
                None => &prompt[tokens.len()..tokens.len() + n],
            };
            let want = if last { Logits::Last } else { Logits::None };
            batch.push(state, input, tokens.len(), want);
            ran.push(i);
            if last && emit.constrained() {
                masks_ahead.push(emit);
            }
        }
        let lm = &*self.lm;
        let r = if masks_ahead.is_empty() {
            batch.run(lm, ws, logits)
        } else {
            std::thread::scope(|sc| {
                sc.spawn(|| masks_ahead.iter_mut().for_each(|e| e.prepare_mask()));
                batch.run(lm, ws, logits)
            })
        };
        drop(batch);
        if let Err(e) = r {
            for &i in &ran {
                let job = self.finish(i);
                let slot = &mut self.slots[i];
                slot.state.truncate(0);
                slot.tokens.clear();
                let _ = job.tx.send(Event::Error(EngineError::Model(e.clone())));
            }
            return;
        }
        let nv = self.lm.n_vocab();
        let mut row = 0;
        for &i in &ran {
            let (n, last) = fed[i];
            let slot = &mut self.slots[i];
            let job = slot.job.as_mut().unwrap();
            match job.next.take() {
                Some(t) => slot.tokens.push(t),
                None => {
                    let start = slot.tokens.len();
                    slot.tokens.extend_from_slice(&job.prompt[start..start + n]);
                }
            }
            if !last {
                continue;
            }
            let l = &logits[row * nv..(row + 1) * nv];
            row += 1;
            let full = slot.tokens.len() >= self.max_seq_len;
            let (ev, reason) = match job.emit.step(l, &slot.tokens, &self.text, full) {
                Ok(x) => x,
                Err(e) => {
                    let job = self.finish(i);
                    let _ = job.tx.send(Event::Error(e));
                    continue;
                }
            };
            let now = Instant::now();
            let first = *job.first_token.get_or_insert(now);
            let id = ev.id;
            let sent = job.tx.send(Event::Token(ev)).is_ok();
            match reason {
                None if sent => job.next = Some(id),
                None => drop(self.finish(i)),
                Some(stop) => {
                    let job = self.finish(i);
                    let done = Finish {
                        stop,
                        usage: Usage {
                            prompt_tokens: job.prompt.len(),
                            cached_prompt_tokens: job.cached,
                            completion_tokens: job.emit.generated,
                        },
                        timings: Timings {
                            queued: job.admitted - job.submitted,
                            prompt: first - job.admitted,
                            generation: now - first,
                        },
                    };
                    let _ = job.tx.send(Event::Done(done));
                }
            }
        }
    }

    /// Tells every request still queued or running that the scheduler stopped.
    fn stop(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].job.is_some() {
                let job = self.finish(i);
                let _ = job.tx.send(Event::Error(EngineError::SchedulerStopped));
            }
        }
        let mut q = self.shared.lock();
        for p in q.pending.drain(..) {
            let _ = p.tx.send(Event::Error(EngineError::SchedulerStopped));
        }
    }
}

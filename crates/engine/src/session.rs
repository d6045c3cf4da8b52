//! A conversation with one model: the KV cache, the tokens in it, and the decode loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::constraint::{ActiveConstraint, Constraint};
use crate::error::EngineError;
use crate::sampling::{logprobs, Sampler, SamplingParams, TokenLogprob};
use crate::text::{StopMatcher, Utf8Assembler};

/// Anything that turns tokens into next-token logits while keeping its own cache (a model plus
/// its KV state in production, a scripted table in tests).
pub trait LogitsSource: Send {
    fn n_vocab(&self) -> usize;
    /// Most tokens the cache can hold.
    fn max_seq_len(&self) -> usize;
    /// Feeds `tokens` at positions `pos..`; returns the logits of the last token, or of every
    /// token (row-major, `tokens.len() * n_vocab`) when `all_logits`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, EngineError>;
    /// [`LogitsSource::forward`] into a reused buffer, so decode steps need not allocate.
    fn forward_into(
        &mut self,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        *logits = self.forward(tokens, pos, all_logits)?;
        Ok(())
    }
    /// Forgets every cached position from `n_tokens` on; returns how many stay cached. That
    /// is fewer (0) when the cache cannot go back that far: a sliding-window ring that has
    /// overwritten keys position `n_tokens` would see.
    fn truncate(&mut self, n_tokens: usize) -> usize;
}

/// What the decode loop needs from a tokenizer.
pub trait TokenText: Send + Sync {
    /// End-of-generation token (EOS, end-of-turn, ...).
    fn is_eog(&self, id: u32) -> bool;
    /// Bytes shown to the user for `id`; control tokens render as nothing.
    fn piece(&self, id: u32) -> Vec<u8>;
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (it is included in the ids).
    Eos,
    /// `max_tokens` were generated.
    Limit,
    /// A user stop string appeared in the text (the string itself is not emitted).
    StopString,
    /// The KV cache is full; no further token can be computed.
    ContextFull,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Limit => "limit",
            StopReason::StopString => "stop_string",
            StopReason::ContextFull => "context_full",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of one `generate` call.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Stop after this many tokens; `None` runs until end-of-generation or a full context.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    /// Stop when any of these appears in the generated text.
    pub stop: Vec<String>,
    /// Also report the chosen token's logprob and the `k` most likely tokens at each step.
    pub logprobs: Option<usize>,
    /// Output must match this grammar (see [`crate::LoadedModel::compile_constraint`]).
    pub constraint: Option<Constraint>,
    /// Added to these tokens' logits before sampling (OpenAI's `logit_bias`; -100 all but
    /// bans a token, +100 all but forces it). Ids outside the vocabulary are ignored.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: Some(256),
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
            logit_bias: Vec::new(),
        }
    }
}

impl GenerateOptions {
    /// Greedy decoding (temperature 0: the most likely token, lowest id on ties) of at most
    /// `max_tokens` tokens: reproducible output, the same as `torchless run --temp 0`.
    pub fn greedy(max_tokens: usize) -> Self {
        GenerateOptions {
            max_tokens: Some(max_tokens),
            sampling: SamplingParams {
                temperature: 0.0,
                ..SamplingParams::default()
            },
            ..GenerateOptions::default()
        }
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub id: u32,
    /// Text released by this step: complete UTF-8 only, minus anything held back because it
    /// might begin a stop string. Concatenating every event's text gives the full output.
    pub text: String,
    /// log-softmax of the raw logits at this step (when logprobs were requested).
    pub logprob: Option<f64>,
    pub top: Vec<TokenLogprob>,
}

/// Timing and outcome of a finished `generate` call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub gen_time: Duration,
    pub stop: StopReason,
    pub seed: u64,
    /// With a constraint: time spent computing token masks and how many were computed.
    pub constraint_masks: Option<(Duration, usize)>,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_time)
    }
    pub fn gen_tps(&self) -> f64 {
        rate(self.generated_tokens, self.gen_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Holds the cache and the exact token sequence it encodes. Successive `generate` calls
/// continue the same sequence (multi-turn use); `reset` starts over.
pub struct Session {
    source: Box<dyn LogitsSource>,
    text: Arc<dyn TokenText>,
    /// Tokens whose keys/values are in the cache, in order.
    history: Vec<u32>,
    /// Last sampled token when generation stopped before feeding it; fed first next time.
    pending: Option<u32>,
}

impl Session {
    pub fn from_parts(source: Box<dyn LogitsSource>, text: Arc<dyn TokenText>) -> Self {
        Session {
            source,
            text,
            history: Vec::new(),
            pending: None,
        }
    }

    /// Every token of the conversation so far (including a sampled one not yet in the cache).
    pub fn tokens(&self) -> Vec<u32> {
        let mut t = self.history.clone();
        t.extend(self.pending);
        t
    }

    /// Number of positions used in the cache.
    pub fn position(&self) -> usize {
        self.history.len()
    }

    pub fn max_seq_len(&self) -> usize {
        self.source.max_seq_len()
    }

    pub fn n_vocab(&self) -> usize {
        self.source.n_vocab()
    }

    /// Keeps the first `n` tokens of [`Session::tokens`] and forgets the rest, cache included;
    /// `n` past the end changes nothing. Returns how many tokens are kept: fewer than `n`
    /// (none) when a sliding-window cache has already overwritten what token `n` would see,
    /// so the caller must feed the prefix again.
    pub fn truncate(&mut self, n: usize) -> usize {
        if n > self.history.len() {
            // Keeps everything, including a pending token.
            return n.min(self.history.len() + usize::from(self.pending.is_some()));
        }
        let kept = self.source.truncate(n).min(n);
        self.history.truncate(kept);
        self.pending = None;
        kept
    }

    /// Prepares the session for `ids`, a prompt that repeats the conversation so far and adds
    /// to it (a chat re-rendered with its template each turn): keeps the prefix the session
    /// shares with `ids`, forgets what differs, and returns how many leading ids are already
    /// there. Feed `ids[n..]` to [`Session::generate`]. At least one id is always left to
    /// feed, since the next token's logits come from the last one fed.
    pub fn reuse_prefix(&mut self, ids: &[u32]) -> usize {
        let have = self.tokens();
        let mut common = have.iter().zip(ids).take_while(|(a, b)| a == b).count();
        if common == ids.len() {
            common = common.saturating_sub(1);
        }
        self.truncate(common)
    }

    pub fn reset(&mut self) {
        self.source.truncate(0);
        self.history.clear();
        self.pending = None;
    }

    /// Feeds `input` (appended to the conversation) in one forward call, then returns an
    /// iterator that samples one token per `next()`. Validation and prompt errors surface here.
    pub fn generate(
        &mut self,
        input: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Generation<'_>, EngineError> {
        let emit = Emitter::new(opts)?;
        let n_vocab = self.source.n_vocab();
        if let Some(&id) = input.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(EngineError::BadToken { id, n_vocab });
        }
        let mut feed: Vec<u32> = self.pending.iter().copied().collect();
        feed.extend_from_slice(input);
        if feed.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let ctx = self.source.max_seq_len();
        // A prompt that fills the cache exactly still yields one token (then context_full).
        if self.history.len() + feed.len() > ctx {
            return Err(EngineError::PromptTooLong {
                prompt: feed.len(),
                used: self.history.len(),
                ctx,
            });
        }
        let t0 = Instant::now();
        let logits = self.source.forward(&feed, self.history.len(), false)?;
        check_len(&logits, n_vocab)?;
        self.history.extend_from_slice(&feed);
        self.pending = None;
        let prompt_time = t0.elapsed();
        Ok(Generation {
            emit,
            logits,
            to_feed: None,
            finished: false,
            stop_reason: None,
            prompt_tokens: feed.len(),
            prompt_time,
            gen_start: Instant::now(),
            gen_time: Duration::ZERO,
            session: self,
        })
    }

    /// Callback form of [`Session::generate`]: runs to the end and returns the stats.
    pub fn generate_with(
        &mut self,
        input: &[u32],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(&TokenEvent),
    ) -> Result<GenerationStats, EngineError> {
        let mut g = self.generate(input, opts)?;
        for ev in g.by_ref() {
            on_token(&ev?);
        }
        g.stats()
            .ok_or_else(|| EngineError::Internal("generation ended without stats".into()))
    }
}

fn check_len(logits: &[f32], n_vocab: usize) -> Result<(), EngineError> {
    if logits.len() != n_vocab {
        return Err(EngineError::Internal(format!(
            "forward returned {} logits, expected {n_vocab}",
            logits.len()
        )));
    }
    Ok(())
}

/// A running generation; yields one [`TokenEvent`] per sampled token.
pub struct Generation<'s> {
    session: &'s mut Session,
    emit: Emitter,
    /// Next-token logits.
    logits: Vec<f32>,
    /// Token sampled by the previous step; fed at the start of the next one so each token is
    /// handed out before the (slow) forward pass that follows it.
    to_feed: Option<u32>,
    finished: bool,
    stop_reason: Option<StopReason>,
    prompt_tokens: usize,
    prompt_time: Duration,
    gen_start: Instant,
    gen_time: Duration,
}

impl Generation<'_> {
    /// Available once the iterator has returned `None` after a normal stop.
    pub fn stats(&self) -> Option<GenerationStats> {
        Some(GenerationStats {
            prompt_tokens: self.prompt_tokens,
            prompt_time: self.prompt_time,
            generated_tokens: self.emit.generated,
            gen_time: self.gen_time,
            stop: self.stop_reason?,
            seed: self.emit.sampler.params().seed,
            constraint_masks: self.emit.mask_stats(),
        })
    }

    /// Tokens the prefill of this generation processed.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    fn step(&mut self) -> Result<TokenEvent, EngineError> {
        let s = &mut *self.session;
        if let Some(id) = self.to_feed.take() {
            let (emit, logits) = (&mut self.emit, &mut self.logits);
            let pos = s.history.len();
            if emit.constrained() {
                // The next mask depends only on the tokens so far: compute it meanwhile.
                std::thread::scope(|sc| {
                    sc.spawn(|| emit.prepare_mask());
                    s.source.forward_into(&[id], pos, false, logits)
                })?;
            } else {
                s.source.forward_into(&[id], pos, false, logits)?;
            }
            check_len(&self.logits, s.source.n_vocab())?;
            s.history.push(id);
            s.pending = None;
        }
        let full = s.history.len() >= s.source.max_seq_len();
        let (ev, reason) = self.emit.step(&self.logits, &s.history, &*s.text, full)?;
        s.pending = Some(ev.id);
        match reason {
            Some(r) => {
                self.stop_reason = Some(r);
                self.finished = true;
            }
            None => self.to_feed = Some(ev.id),
        }
        Ok(ev)
    }
}

/// One generation's sampling, stop rules and streamed text, a token at a time: shared by
/// [`Generation`] and the batch scheduler, so both stop and stream alike.
pub(crate) struct Emitter {
    pub sampler: Sampler,
    max_tokens: Option<usize>,
    want_logprobs: Option<usize>,
    stop: StopMatcher,
    utf8: Utf8Assembler,
    /// Tokens sampled so far.
    pub generated: usize,
    constraint: Option<ActiveConstraint>,
    logit_bias: Vec<(u32, f32)>,
    /// The logits with `logit_bias` added (reused each step).
    biased: Vec<f32>,
}

impl Emitter {
    pub fn new(opts: &GenerateOptions) -> Result<Emitter, EngineError> {
        if opts.max_tokens == Some(0) {
            return Err(EngineError::InvalidParam(
                "max tokens: must be at least 1 (None means no limit)".into(),
            ));
        }
        if let Some((id, b)) = opts.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
            return Err(EngineError::InvalidParam(format!(
                "logit bias of token {id}: {b} is not a finite number"
            )));
        }
        Ok(Emitter {
            sampler: Sampler::new(opts.sampling.clone())?,
            max_tokens: opts.max_tokens,
            want_logprobs: opts.logprobs,
            stop: StopMatcher::new(&opts.stop),
            utf8: Utf8Assembler::new(),
            generated: 0,
            constraint: opts.constraint.as_ref().map(Constraint::start),
            logit_bias: opts.logit_bias.clone(),
            biased: Vec::new(),
        })
    }

    pub fn constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// Computes the constraint's next mask ahead of [`Emitter::step`] (see
    /// [`ActiveConstraint::prepare`]).
    pub fn prepare_mask(&mut self) {
        if let Some(c) = &mut self.constraint {
            c.prepare();
        }
    }

    /// Time spent computing constraint masks and how many were computed.
    pub fn mask_stats(&self) -> Option<(Duration, usize)> {
        self.constraint.as_ref().map(|c| (c.mask_time, c.masks))
    }

    /// Samples the next token from `logits` (`history`: every token fed so far) and says
    /// whether generation ends with it; `context_full`: no further token can be fed.
    pub fn step(
        &mut self,
        logits: &[f32],
        history: &[u32],
        text: &dyn TokenText,
        context_full: bool,
    ) -> Result<(TokenEvent, Option<StopReason>), EngineError> {
        let logits = if self.logit_bias.is_empty() {
            logits
        } else {
            self.biased.clear();
            self.biased.extend_from_slice(logits);
            for &(id, b) in &self.logit_bias {
                if let Some(l) = self.biased.get_mut(id as usize) {
                    *l += b;
                }
            }
            &self.biased[..]
        };
        let id = match &mut self.constraint {
            Some(c) => {
                let id = self.sampler.sample(c.mask(logits)?, history)?;
                c.commit(id)?;
                id
            }
            None => self.sampler.sample(logits, history)?,
        };
        self.generated += 1;
        let (logprob, top) = match self.want_logprobs {
            Some(k) => {
                let (lp, top) = logprobs(logits, id, k);
                (Some(lp), top)
            }
            None => (None, Vec::new()),
        };

        let eog = text.is_eog(id);
        let mut out = String::new();
        let mut reason = None;
        if !eog {
            let piece = self.utf8.push(&text.piece(id));
            let c = self.stop.push(&piece);
            out = c.emit;
            if c.stopped {
                reason = Some(StopReason::StopString);
            }
        }
        if reason.is_none() {
            reason = if eog {
                Some(StopReason::Eos)
            } else if self.max_tokens == Some(self.generated) {
                Some(StopReason::Limit)
            } else if context_full {
                Some(StopReason::ContextFull)
            } else {
                None
            };
            if reason.is_some() {
                // Nothing can complete a stop string now: release what was held back.
                let c = self.stop.push(&self.utf8.finish());
                out.push_str(&c.emit);
                if c.stopped {
                    reason = Some(StopReason::StopString);
                } else {
                    out.push_str(&self.stop.finish());
                }
            }
        }
        let ev = TokenEvent {
            id,
            text: out,
            logprob,
            top,
        };
        Ok((ev, reason))
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<TokenEvent, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            // A failed forward leaves the cache in an unknown state for this position; the
            // sequence stays as it was before the failing token.
            self.finished = true;
        }
        self.gen_time = self.gen_start.elapsed();
        Some(r)
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

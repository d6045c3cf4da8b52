//! Sampling chain: penalties -> top-k -> top-p -> min-p -> temperature -> draw.
//!
//! The order is llama.cpp's default chain (`common_params_sampling::samplers`): the truncation
//! samplers see the untempered distribution and temperature only reshapes what survives. Putting
//! temperature first would change which tokens top-p / min-p keep, so outputs would no longer be
//! comparable with llama.cpp at the same settings.

use crate::error::EngineError;

/// User-facing sampling settings. Defaults are llama.cpp's.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy: argmax of the (penalised) logits, lowest id on ties.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Nucleus: smallest prefix whose probability mass reaches `top_p`; 1.0 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the best one; 0 disables.
    pub min_p: f32,
    /// > 1 discourages repeats: positive logits are divided, negative ones multiplied.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens (prompt included) the penalties look at; 0 disables.
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every token present in the window.
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the window.
    pub frequency_penalty: f32,
    /// Seed of the sampler's PRNG; the same seed and inputs give the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Deterministic argmax decoding with no penalties.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Rejects values that have no meaning instead of silently clamping them.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad =
            |what: &str, why: String| Err(EngineError::InvalidParam(format!("{what}: {why}")));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p", format!("must be in [0, 1], got {}", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad(
                "repeat-penalty",
                format!("must be > 0, got {}", self.repeat_penalty),
            );
        }
        if !self.presence_penalty.is_finite() {
            return bad("presence-penalty", "must be finite".into());
        }
        if !self.frequency_penalty.is_finite() {
            return bad("frequency-penalty", "must be finite".into());
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fixed and well distributed, so a seed reproduces across platforms and
/// crate versions (unlike a general-purpose RNG crate whose algorithm may change).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A seed for runs where the user gave none; reported back so the run can be replayed.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.write_u32(std::process::id());
    // Keep it in u32 range so it is easy to type back in.
    h.finish() & 0xFFFF_FFFF
}

/// Stateful sampler: the parameters plus the PRNG stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, EngineError> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Sampler { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from raw `logits`; `history` is every token seen so far (prompt
    /// included), of which the last `repeat_last_n` feed the penalties.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, EngineError> {
        if logits.is_empty() {
            return Err(EngineError::Internal("empty logits".into()));
        }
        let p = &self.params;
        if p.temperature == 0.0 && !penalties_apply(history, p) {
            // Greedy with nothing to adjust: no candidate list (a copy of the whole
            // vocabulary per token, per sequence of a batch).
            return argmax_logits(logits)
                .ok_or_else(|| EngineError::Internal("every token is forbidden".into()));
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        apply_penalties(&mut cand, history, p);
        // Tokens a constraint forbids arrive as -inf: they must not survive as candidates,
        // or rounding in `draw` could hand one the leftover probability.
        if cand.iter().any(|c| c.1 == f32::NEG_INFINITY) {
            cand.retain(|c| c.1 != f32::NEG_INFINITY);
            if cand.is_empty() {
                return Err(EngineError::Internal("every token is forbidden".into()));
            }
        }

        if p.temperature == 0.0 {
            return Ok(argmax(&cand));
        }
        top_k(&mut cand, p.top_k);
        top_p(&mut cand, p.top_p);
        min_p(&mut cand, p.min_p);
        for c in cand.iter_mut() {
            c.1 /= p.temperature;
        }
        Ok(draw(&cand, self.rng.next_f64()))
    }
}

/// Lowest id wins ties, like llama.cpp's greedy reference; NaN never wins.
pub fn argmax(cand: &[(u32, f32)]) -> u32 {
    let mut best = cand[0];
    for &c in &cand[1..] {
        if c.1 > best.1 || (c.1 == best.1 && c.0 < best.0) || best.1.is_nan() {
            best = c;
        }
    }
    best.0
}

/// [`argmax`] over raw logits, forbidden (-inf) tokens skipped; `None` if all are.
fn argmax_logits(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l == f32::NEG_INFINITY {
            continue;
        }
        match best {
            Some((_, b)) if !(l > b || b.is_nan()) => {}
            _ => best = Some((i, l)),
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Whether the repetition penalties change anything for this history.
fn penalties_apply(history: &[u32], p: &SamplingParams) -> bool {
    let inactive =
        p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0;
    !(p.repeat_last_n == 0 || inactive || history.is_empty())
}

fn apply_penalties(cand: &mut [(u32, f32)], history: &[u32], p: &SamplingParams) {
    if !penalties_apply(history, p) {
        return;
    }
    let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
    let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for &t in window {
        *counts.entry(t).or_insert(0) += 1;
    }
    // `cand` is still indexed by id here (penalties run first in the chain).
    for (&id, &n) in &counts {
        let Some(c) = cand.get_mut(id as usize) else {
            continue;
        };
        debug_assert_eq!(c.0, id);
        if c.1 <= 0.0 {
            c.1 *= p.repeat_penalty;
        } else {
            c.1 /= p.repeat_penalty;
        }
        c.1 -= n as f32 * p.frequency_penalty + p.presence_penalty;
    }
}

/// Sorts by logit descending (id ascending among equals, so results never depend on the sort
/// algorithm) and keeps `k`; 0 keeps all but still sorts, which top-p relies on.
fn top_k(cand: &mut Vec<(u32, f32)>, k: usize) {
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k > 0 && k < cand.len() {
        cand.select_nth_unstable_by(k - 1, by_logit);
        cand.truncate(k);
    }
    cand.sort_unstable_by(by_logit);
}

fn softmax(cand: &[(u32, f32)]) -> Vec<f64> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<f64> = cand.iter().map(|c| (c.1 as f64 - max).exp()).collect();
    let sum: f64 = probs.iter().sum();
    for p in probs.iter_mut() {
        *p /= sum;
    }
    probs
}

/// Expects `cand` sorted descending.
fn top_p(cand: &mut Vec<(u32, f32)>, p: f32) {
    if p >= 1.0 {
        return;
    }
    let probs = softmax(cand);
    let mut cum = 0.0;
    for (i, pr) in probs.iter().enumerate() {
        cum += pr;
        if cum >= p as f64 {
            cand.truncate(i + 1);
            return;
        }
    }
}

/// Expects `cand` sorted descending. p_i >= min_p * p_max  <=>  l_i >= l_max + ln(min_p).
fn min_p(cand: &mut Vec<(u32, f32)>, p: f32) {
    if p <= 0.0 || cand.is_empty() {
        return;
    }
    let threshold = cand[0].1 + p.ln();
    let keep = cand.iter().take_while(|c| c.1 >= threshold).count().max(1);
    cand.truncate(keep);
}

fn draw(cand: &[(u32, f32)], u: f64) -> u32 {
    let probs = softmax(cand);
    let mut cum = 0.0;
    for (c, p) in cand.iter().zip(&probs) {
        cum += p;
        if u < cum {
            return c.0;
        }
    }
    // Rounding can leave the total a hair under 1; the last candidate takes the remainder.
    cand[cand.len() - 1].0
}

/// One token and its log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f64,
}

/// log-softmax of the raw logits over the whole vocabulary, in f64 (as the golden references
/// are computed): returns the chosen token's logprob and the `k` best, best first, ties by id.
pub fn logprobs(logits: &[f32], chosen: u32, k: usize) -> (f64, Vec<TokenLogprob>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    let lp = |id: u32| logits[id as usize] as f64 - log_z;
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(ids.len());
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by);
    }
    ids.truncate(k);
    ids.sort_unstable_by(by);
    let top = ids
        .into_iter()
        .map(|id| TokenLogprob {
            id,
            logprob: lp(id),
        })
        .collect();
    (lp(chosen), top)
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;

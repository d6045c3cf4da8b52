//! Causal multi-head attention with grouped KV heads over a per-layer KV cache.
//!
//! Two numerical recipes, one per cache type, each the one llama.cpp uses by default for it:
//! * F32 cache: plain attention (K·Q in f32, scale, mask, softmax with f64 denominator,
//!   probabilities times V), as with flash attention disabled.
//! * F16 cache: ggml's CPU flash attention. For a batch shorter than 64 queries (always the
//!   case while decoding) Q is rounded to f16, scores use f16·f16 products, the softmax is
//!   online and the V accumulator itself is stored in f16 after every update. Batches of 64
//!   or more go through ggml's tiled kernel, which keeps Q and the accumulator in f32.

use half::f16;
use std::cell::RefCell;

use crate::{shape_err, ComputeError};

/// Storage type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvDtype {
    F16,
    F32,
}

/// Batches at least this long use ggml's tiled flash-attention kernel (GGML_FA_TILE_Q).
const FA_TILE_Q: usize = 64;

/// Largest head dimension the F16 path keeps on the stack.
const MAX_HEAD_DIM: usize = 512;

enum Store {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

/// Keys and values of one layer, position-major: `[pos][kv_head][dim]`.
pub struct KvCache {
    store: Store,
    n_head_kv: usize,
    dk: usize,
    dv: usize,
    capacity: usize,
    /// Positions written so far (entries past it are stale).
    len: usize,
}

impl KvCache {
    pub fn new(dtype: KvDtype, capacity: usize, n_head_kv: usize, dk: usize, dv: usize) -> KvCache {
        let store = match dtype {
            KvDtype::F32 => Store::F32 {
                k: Vec::new(),
                v: Vec::new(),
            },
            KvDtype::F16 => Store::F16 {
                k: Vec::new(),
                v: Vec::new(),
            },
        };
        KvCache {
            store,
            n_head_kv,
            dk,
            dv,
            capacity,
            len: 0,
        }
    }

    pub fn dtype(&self) -> KvDtype {
        match self.store {
            Store::F32 { .. } => KvDtype::F32,
            Store::F16 { .. } => KvDtype::F16,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position at or after `n`.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Writes keys `k` (`n_head_kv * dk`) and values `v` (`n_head_kv * dv`) for `pos`.
    /// Positions must be written in order without gaps.
    pub fn store(&mut self, pos: usize, k: &[f32], v: &[f32]) -> Result<(), ComputeError> {
        if pos >= self.capacity {
            return Err(shape_err(
                "KV cache position",
                format!("< {}", self.capacity),
                pos,
            ));
        }
        if pos > self.len {
            return Err(shape_err(
                "KV cache position (no gaps)",
                format!("<= {}", self.len),
                pos,
            ));
        }
        let (kr, vr) = (self.n_head_kv * self.dk, self.n_head_kv * self.dv);
        if k.len() != kr || v.len() != vr {
            return Err(shape_err(
                "KV row",
                format!("{kr} keys, {vr} values"),
                format!("{}, {}", k.len(), v.len()),
            ));
        }
        match &mut self.store {
            Store::F32 { k: ks, v: vs } => {
                ks.resize((pos + 1) * kr, 0.0);
                vs.resize((pos + 1) * vr, 0.0);
                ks[pos * kr..].copy_from_slice(k);
                vs[pos * vr..].copy_from_slice(v);
            }
            Store::F16 { k: ks, v: vs } => {
                ks.resize((pos + 1) * kr, f16::ZERO);
                vs.resize((pos + 1) * vr, f16::ZERO);
                for (d, &s) in ks[pos * kr..].iter_mut().zip(k) {
                    *d = f16::from_f32(s);
                }
                for (d, &s) in vs[pos * vr..].iter_mut().zip(v) {
                    *d = f16::from_f32(s);
                }
            }
        }
        self.len = pos + 1;
        Ok(())
    }
}

/// Attention hyperparameters of one layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub n_head: usize,
    /// Multiplies K·Q before the softmax.
    pub scale: f32,
    /// Logit soft-capping `c * tanh(s / c)`; 0 disables it.
    pub softcap: f32,
    /// Sliding window: a query at p sees keys at j with `p - j < window`; 0 = unlimited.
    pub window: usize,
}

/// Attends `n_tokens` queries at positions `start_pos..` (`q`: `[token][head][dk]`) to the
/// cached keys/values `0..=pos` (the batch's own K/V must already be stored), writing
/// `[token][head][dv]` into `out`.
pub fn attention(
    p: &AttnParams,
    cache: &KvCache,
    q: &[f32],
    n_tokens: usize,
    start_pos: usize,
    out: &mut [f32],
) -> Result<(), ComputeError> {
    let (dk, dv, nkv) = (cache.dk, cache.dv, cache.n_head_kv);
    if p.n_head == 0 || !p.n_head.is_multiple_of(nkv) {
        return Err(shape_err(
            "attention heads (multiple of KV heads)",
            format!("k * {nkv}"),
            p.n_head,
        ));
    }
    if q.len() != n_tokens * p.n_head * dk {
        return Err(shape_err(
            "attention queries",
            n_tokens * p.n_head * dk,
            q.len(),
        ));
    }
    if out.len() != n_tokens * p.n_head * dv {
        return Err(shape_err(
            "attention output",
            n_tokens * p.n_head * dv,
            out.len(),
        ));
    }
    if start_pos + n_tokens > cache.len {
        return Err(shape_err(
            "cached positions",
            start_pos + n_tokens,
            cache.len,
        ));
    }
    if cache.dtype() == KvDtype::F16 && (dk > MAX_HEAD_DIM || dv > MAX_HEAD_DIM) {
        return Err(shape_err(
            "head dim for F16 KV",
            format!("<= {MAX_HEAD_DIM}"),
            dk.max(dv),
        ));
    }
    let group = p.n_head / nkv;
    let flash_small = n_tokens < FA_TILE_Q;
    let job = |(idx, o): (usize, &mut [f32]), scores: &mut Vec<f32>| {
        let (t, h) = (idx / p.n_head, idx % p.n_head);
        let pos = start_pos + t;
        let first = if p.window > 0 {
            (pos + 1).saturating_sub(p.window)
        } else {
            0
        };
        let qh = &q[idx * dk..(idx + 1) * dk];
        let kvh = h / group;
        match &cache.store {
            Store::F32 { k, v } => {
                let key = |j: usize| &k[(j * nkv + kvh) * dk..][..dk];
                let val = |j: usize| &v[(j * nkv + kvh) * dv..][..dv];
                plain(p, qh, first, pos, key, val, scores, o, false);
            }
            Store::F16 { k, v } => {
                let key = |j: usize| &k[(j * nkv + kvh) * dk..][..dk];
                let val = |j: usize| &v[(j * nkv + kvh) * dv..][..dv];
                if flash_small {
                    flash_f16(p, qh, first, pos, key, val, o);
                } else {
                    let keyf = |j: usize| key(j).iter().map(|x| x.to_f32());
                    let valf = |j: usize| val(j).iter().map(|x| x.to_f32());
                    plain_iter(p, qh, first, pos, keyf, valf, scores, o, true);
                }
            }
        }
    };
    thread_local! {
        // Per-thread score buffer, kept across calls so decoding does not allocate.
        static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let with_scores = |i: usize, o: &mut [f32]| {
        SCORES.with(|s| job((i, o), &mut s.borrow_mut()));
    };
    let rows = n_tokens * p.n_head;
    let work = rows * (start_pos + n_tokens) * (dk + dv);
    if work < 64 * 1024 {
        out.chunks_mut(dv)
            .enumerate()
            .for_each(|(i, o)| with_scores(i, o));
    } else {
        crate::pool::par_chunks_mut(out, dv, with_scores);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plain<'a>(
    p: &AttnParams,
    q: &[f32],
    first: usize,
    pos: usize,
    key: impl Fn(usize) -> &'a [f32],
    val: impl Fn(usize) -> &'a [f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
    flash_order: bool,
) {
    plain_iter(
        p,
        q,
        first,
        pos,
        |j| key(j).iter().copied(),
        |j| val(j).iter().copied(),
        scores,
        out,
        flash_order,
    )
}

/// Scores for keys `first..=pos`, softmax, weighted sum of values. `flash_order` applies
/// the scale before the soft cap (ggml flash attention) instead of after (ggml soft_max_ext).
#[allow(clippy::too_many_arguments)]
fn plain_iter<K, V>(
    p: &AttnParams,
    q: &[f32],
    first: usize,
    pos: usize,
    key: impl Fn(usize) -> K,
    val: impl Fn(usize) -> V,
    scores: &mut Vec<f32>,
    out: &mut [f32],
    flash_order: bool,
) where
    K: Iterator<Item = f32>,
    V: Iterator<Item = f32>,
{
    scores.clear();
    for j in first..=pos {
        let dot: f64 = key(j).zip(q).map(|(a, &b)| (a * b) as f64).sum();
        let mut s = dot as f32;
        if flash_order {
            s *= p.scale;
            if p.softcap != 0.0 {
                s = p.softcap * (s / p.softcap).tanh();
            }
        } else {
            if p.softcap != 0.0 {
                s = (s * (1.0 / p.softcap)).tanh() * p.softcap;
            }
            s *= p.scale;
        }
        scores.push(s);
    }
    crate::ops::softmax(scores);
    out.fill(0.0);
    for (j, &w) in (first..=pos).zip(scores.iter()) {
        for (o, x) in out.iter_mut().zip(val(j)) {
            *o += w * x;
        }
    }
}

/// ggml's one-chunk flash attention with F16 K/V, step for step.
fn flash_f16<'a>(
    p: &AttnParams,
    q: &[f32],
    first: usize,
    pos: usize,
    key: impl Fn(usize) -> &'a [f16],
    val: impl Fn(usize) -> &'a [f16],
    out: &mut [f32],
) {
    const MAX_D: usize = MAX_HEAD_DIM;
    let dk = q.len();
    let dv = out.len();
    let mut qh = [f16::ZERO; MAX_D];
    let mut acc = [f16::ZERO; MAX_D];
    let (qh, acc) = (&mut qh[..dk], &mut acc[..dv]);
    for (d, &s) in qh.iter_mut().zip(q) {
        *d = f16::from_f32(s);
    }
    let (scale, cap) = if p.softcap != 0.0 {
        (p.scale / p.softcap, p.softcap)
    } else {
        (p.scale, 0.0)
    };
    let mut m = f32::NEG_INFINITY;
    let mut sum = 0f32;
    for j in first..=pos {
        let dot: f64 = key(j)
            .iter()
            .zip(qh.iter())
            .map(|(a, b)| (a.to_f32() * b.to_f32()) as f64)
            .sum();
        let mut s = dot as f32 * scale;
        if cap != 0.0 {
            s = cap * s.tanh();
        }
        let mut ms = 1.0f32;
        let mut vs = 1.0f32;
        if s > m {
            let old = m;
            m = s;
            ms = (old - m).exp();
            for a in acc.iter_mut() {
                *a = f16::from_f32(a.to_f32() * ms);
            }
        } else {
            vs = (s - m).exp();
        }
        for (a, x) in acc.iter_mut().zip(val(j)) {
            *a = f16::from_f32(a.to_f32() + x.to_f32() * vs);
        }
        sum = sum * ms + vs;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a.to_f32() * inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.731 + seed) * 1.37).sin())
            .collect()
    }

    /// Straightforward f64 attention for one query.
    fn naive(q: &[f32], ks: &[Vec<f32>], vs: &[Vec<f32>], scale: f64, cap: f64) -> Vec<f64> {
        let mut s: Vec<f64> = ks
            .iter()
            .map(|k| {
                let d: f64 = k.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum();
                let d = if cap > 0.0 { cap * (d / cap).tanh() } else { d };
                d * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s
            .iter_mut()
            .map(|x| {
                *x = (*x - m).exp();
                *x
            })
            .sum();
        let mut o = vec![0f64; vs[0].len()];
        for (w, v) in s.iter().zip(vs) {
            for (a, b) in o.iter_mut().zip(v) {
                *a += w / z * *b as f64;
            }
        }
        o
    }

    fn run(dtype: KvDtype, n_tokens: usize, window: usize, cap: f32) -> (Vec<f32>, Vec<Vec<f64>>) {
        let (n_head, nkv, dk, dv) = (4, 2, 8, 6);
        let mut cache = KvCache::new(dtype, 128, nkv, dk, dv);
        let k = data(n_tokens * nkv * dk, 0.3);
        let v = data(n_tokens * nkv * dv, 1.1);
        let q = data(n_tokens * n_head * dk, 2.0);
        for t in 0..n_tokens {
            cache
                .store(
                    t,
                    &k[t * nkv * dk..][..nkv * dk],
                    &v[t * nkv * dv..][..nkv * dv],
                )
                .unwrap();
        }
        let p = AttnParams {
            n_head,
            scale: 0.35,
            softcap: cap,
            window,
        };
        let mut out = vec![0f32; n_tokens * n_head * dv];
        attention(&p, &cache, &q, n_tokens, 0, &mut out).unwrap();
        let mut want = Vec::new();
        for t in 0..n_tokens {
            for h in 0..n_head {
                let kvh = h / 2;
                let first = if window > 0 {
                    (t + 1).saturating_sub(window)
                } else {
                    0
                };
                let ks: Vec<Vec<f32>> = (first..=t)
                    .map(|j| k[(j * nkv + kvh) * dk..][..dk].to_vec())
                    .collect();
                let vs: Vec<Vec<f32>> = (first..=t)
                    .map(|j| v[(j * nkv + kvh) * dv..][..dv].to_vec())
                    .collect();
                want.push(naive(
                    &q[(t * n_head + h) * dk..][..dk],
                    &ks,
                    &vs,
                    0.35,
                    cap as f64,
                ));
            }
        }
        (out, want)
    }

    fn max_err(out: &[f32], want: &[Vec<f64>]) -> f64 {
        let flat: Vec<f64> = want.iter().flatten().copied().collect();
        out.iter()
            .zip(&flat)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn f32_cache_matches_naive_with_gqa_window_and_softcap() {
        for (window, cap) in [(0, 0.0), (3, 0.0), (0, 1.5)] {
            let (out, want) = run(KvDtype::F32, 10, window, cap);
            let e = max_err(&out, &want);
            assert!(e < 1e-6, "window {window} cap {cap}: {e}");
        }
    }

    #[test]
    fn f16_cache_tracks_naive_within_f16_precision() {
        // short batch: flash path with f16 accumulator; long batch: tiled (f32) path
        for n in [10, 70] {
            let (out, want) = run(KvDtype::F16, n, 5, 0.0);
            let e = max_err(&out, &want);
            assert!(e < 4e-3 && e > 0.0, "n {n}: {e}");
        }
    }

    #[test]
    fn first_token_returns_its_value_and_bad_shapes_fail() {
        let mut cache = KvCache::new(KvDtype::F16, 4, 1, 2, 2);
        cache.store(0, &[1.0, 2.0], &[0.5, -0.25]).unwrap();
        let p = AttnParams {
            n_head: 2,
            scale: 1.0,
            softcap: 0.0,
            window: 0,
        };
        let mut out = [0f32; 4];
        attention(&p, &cache, &[1.0, 0.0, 0.0, 1.0], 1, 0, &mut out).unwrap();
        assert_eq!(out, [0.5, -0.25, 0.5, -0.25]);
        assert!(cache.store(2, &[0.0; 2], &[0.0; 2]).is_err());
        assert!(cache.store(4, &[0.0; 2], &[0.0; 2]).is_err());
        assert!(attention(&p, &cache, &[1.0; 4], 1, 1, &mut out).is_err());
        cache.truncate(0);
        assert!(cache.is_empty());
    }
}

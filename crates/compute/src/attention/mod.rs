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
use half::slice::HalfFloatSliceExt;
use quant::dispatch::SimdLevel;
use std::cell::RefCell;

use crate::{shape_err, ComputeError};

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod flash;
pub(crate) mod kernels;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Storage type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvDtype {
    F16,
    F32,
}

/// Batches at least this long use ggml's tiled flash-attention kernel (GGML_FA_TILE_Q).
const FA_TILE_Q: usize = 64;

/// Largest head dimension the F16 path keeps on the stack (DeepSeek's latent attention
/// needs 576 for K).
const MAX_HEAD_DIM: usize = 1024;

enum Store {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

/// Keys and values of one layer, head-major: `[kv_head][slot][dim]`, so that attention reads
/// one head's keys as one contiguous run. Room for `alloc` slots per head is reserved and
/// doubled when full (up to `slots`), so short sessions do not pay for the full context.
///
/// A full cache has a slot per position (`slots == capacity`). A sliding-window layer's cache
/// is a ring ([`KvCache::windowed`]): position `p` lives in slot `p % slots`, and a slot is
/// reused once no query can see its position any more, as in llama.cpp's SWA cache.
///
/// A latent cache ([`KvCache::latent`], multi-head latent attention) stores one shared row
/// per position and no values of its own: the value of a position is the first `dv`
/// elements of its key row, as in llama.cpp's K-only MLA cache.
pub struct KvCache {
    store: Store,
    /// Values are views of the keys' first `dv` elements (nothing stored in `v`).
    latent: bool,
    n_head_kv: usize,
    dk: usize,
    dv: usize,
    /// Most positions this cache accepts (the context length).
    capacity: usize,
    /// Slots per head: `capacity`, or the ring size of a windowed cache.
    slots: usize,
    /// Sliding window of the queries that read this cache (0 = unlimited).
    window: usize,
    /// Positions written so far (entries past it are stale).
    len: usize,
    /// Slots each head has room for.
    alloc: usize,
}

impl KvCache {
    /// KV heads and the key and value dims per head.
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.n_head_kv, self.dk, self.dv)
    }
}

/// llama.cpp pads the SWA cache to this many cells.
const SWA_PAD: usize = 256;

/// Ring size of a sliding-window cache: llama.cpp's `min(n_ctx, window + n_ubatch)` padded to
/// 256 cells. A micro-batch of up to `ubatch` queries stores its keys before attending, so the
/// ring must hold the batch plus the `window - 1` positions before it.
pub fn windowed_slots(capacity: usize, window: usize, ubatch: usize) -> usize {
    if window == 0 {
        return capacity;
    }
    window
        .saturating_add(ubatch)
        .next_multiple_of(SWA_PAD)
        .min(capacity)
}

impl KvCache {
    pub fn new(dtype: KvDtype, capacity: usize, n_head_kv: usize, dk: usize, dv: usize) -> KvCache {
        KvCache::windowed(dtype, capacity, 0, 0, n_head_kv, dk, dv)
    }

    /// The cache of a layer whose queries see only the last `window` positions (0 = all),
    /// fed in micro-batches of at most `ubatch` tokens: a ring of [`windowed_slots`] slots.
    pub fn windowed(
        dtype: KvDtype,
        capacity: usize,
        window: usize,
        ubatch: usize,
        n_head_kv: usize,
        dk: usize,
        dv: usize,
    ) -> KvCache {
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
            latent: false,
            n_head_kv,
            dk,
            dv,
            capacity,
            slots: windowed_slots(capacity, window, ubatch),
            window,
            len: 0,
            alloc: 0,
        }
    }

    /// The cache of a multi-head latent attention layer: one key row of `dk` per position
    /// (llama.cpp's `[kv_latent | k_rope]`), shared by every query head, whose first `dv`
    /// elements are also the position's value, so a position costs `dk` elements. Store
    /// positions with an empty value slice.
    ///
    /// # Panics
    /// If `dv > dk`.
    pub fn latent(dtype: KvDtype, capacity: usize, dk: usize, dv: usize) -> KvCache {
        assert!(
            dv <= dk,
            "latent values ({dv}) are a prefix of the keys ({dk})"
        );
        let mut c = KvCache::new(dtype, capacity, 1, dk, dv);
        c.latent = true;
        c
    }

    /// Whether values are views of the keys ([`KvCache::latent`]).
    pub fn is_latent(&self) -> bool {
        self.latent
    }

    /// Elements stored per KV head and position.
    fn row_elems(&self) -> usize {
        if self.latent {
            self.dk
        } else {
            self.dk + self.dv
        }
    }

    /// Makes room for slot `slot` in every head, moving the heads apart if needed. Until the
    /// storage reaches `slots` no position has wrapped, so slot == position below `len`.
    fn reserve(&mut self, slot: usize) {
        if slot < self.alloc {
            return;
        }
        let new = (self.alloc * 2).max(slot + 1).max(64).min(self.slots);
        let (old, nkv, len) = (self.alloc, self.n_head_kv, self.len.min(self.alloc));
        fn regrow<T: Copy + Default>(
            buf: &mut Vec<T>,
            nkv: usize,
            d: usize,
            (old, new, len): (usize, usize, usize),
        ) {
            let mut next = vec![T::default(); nkv * new * d];
            for h in 0..nkv {
                next[h * new * d..][..len * d].copy_from_slice(&buf[h * old * d..][..len * d]);
            }
            *buf = next;
        }
        let sizes = (old, new, len);
        // A latent cache's values live in its keys.
        let dv = if self.latent { 0 } else { self.dv };
        match &mut self.store {
            Store::F32 { k, v } => {
                regrow(k, nkv, self.dk, sizes);
                regrow(v, nkv, dv, sizes);
            }
            Store::F16 { k, v } => {
                regrow(k, nkv, self.dk, sizes);
                regrow(v, nkv, dv, sizes);
            }
        }
        self.alloc = new;
    }

    /// Slots per head once full: the context length, or the ring size.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes the cache holds once every slot is in use.
    pub fn max_bytes(&self) -> usize {
        let elem = match self.store {
            Store::F32 { .. } => 4,
            Store::F16 { .. } => 2,
        };
        self.n_head_kv * self.slots * self.row_elems() * elem
    }

    /// Oldest position still stored (later ones overwrite a ring's slots).
    fn oldest(&self) -> usize {
        self.len.saturating_sub(self.slots)
    }

    /// Whether [`KvCache::truncate`] to `n` positions keeps everything the next query (at
    /// `n`) can see. Not so for a ring that has since overwritten part of that window.
    pub fn can_truncate(&self, n: usize) -> bool {
        if n >= self.len || self.window == 0 {
            return true;
        }
        self.oldest() <= (n + 1).saturating_sub(self.window)
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

    /// Forgets every position at or after `n`. Returns false, and forgets everything, when
    /// the positions the next query would see are no longer stored
    /// ([`KvCache::can_truncate`]).
    pub fn truncate(&mut self, n: usize) -> bool {
        if self.can_truncate(n) {
            self.len = self.len.min(n);
            true
        } else {
            self.len = 0;
            false
        }
    }

    /// Whether `src` holds positions `self.len()..n` in the same layout, so
    /// [`KvCache::copy_prefix_from`] can take them: same head count, dims, type and ring
    /// size, `n` within both caches, and none of those positions overwritten in `src`'s ring.
    pub fn can_copy_prefix_from(&self, src: &KvCache, n: usize) -> bool {
        self.dims() == src.dims()
            && self.latent == src.latent
            && self.dtype() == src.dtype()
            && self.slots == src.slots
            && n <= src.len
            && n <= self.capacity
            && self.len <= n
            && src.oldest() <= self.len
    }

    /// Appends positions `self.len()..n` copied from `src` (another sequence's cache whose
    /// first `n` positions hold the same tokens): the keys and values it computed are the
    /// ones this sequence would compute, so a prefix shared by two sequences is computed
    /// once. Returns false, changing nothing, unless [`KvCache::can_copy_prefix_from`].
    pub fn copy_prefix_from(&mut self, src: &KvCache, n: usize) -> bool {
        if !self.can_copy_prefix_from(src, n) {
            return false;
        }
        if n == self.len {
            return true;
        }
        self.reserve((n - 1) % self.slots);
        // A ring that wraps during the copy needs every slot.
        if n > self.slots {
            self.reserve(self.slots - 1);
        }
        let vd = if self.latent { 0 } else { self.dv };
        let (dk, nkv, da, sa) = (self.dk, self.n_head_kv, self.alloc, src.alloc);
        fn copy<T: Copy>(
            dst: &mut [T],
            src: &[T],
            d: usize,
            (da, sa): (usize, usize),
            h: usize,
            slot: usize,
        ) {
            dst[(h * da + slot) * d..][..d].copy_from_slice(&src[(h * sa + slot) * d..][..d]);
        }
        for pos in self.len..n {
            // Same ring size, so the same slot in both.
            let slot = pos % self.slots;
            for h in 0..nkv {
                match (&mut self.store, &src.store) {
                    (Store::F32 { k, v }, Store::F32 { k: sk, v: sv }) => {
                        copy(k, sk, dk, (da, sa), h, slot);
                        copy(v, sv, vd, (da, sa), h, slot);
                    }
                    (Store::F16 { k, v }, Store::F16 { k: sk, v: sv }) => {
                        copy(k, sk, dk, (da, sa), h, slot);
                        copy(v, sv, vd, (da, sa), h, slot);
                    }
                    _ => unreachable!("dtypes checked above"),
                }
            }
        }
        self.len = n;
        true
    }

    /// Writes keys `k` (`n_head_kv * dk`) and values `v` (`n_head_kv * dv`; empty for a
    /// latent cache, whose values are the keys' prefix) for `pos`. Positions must be
    /// written in order without gaps.
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
        let vd = if self.latent { 0 } else { self.dv };
        let (kr, vr) = (self.n_head_kv * self.dk, self.n_head_kv * vd);
        if k.len() != kr || v.len() != vr {
            return Err(shape_err(
                "KV row",
                format!("{kr} keys, {vr} values"),
                format!("{}, {}", k.len(), v.len()),
            ));
        }
        let slot = pos % self.slots;
        self.reserve(slot);
        let (dk, dv, al) = (self.dk, vd, self.alloc);
        match &mut self.store {
            Store::F32 { k: ks, v: vs } => {
                for h in 0..self.n_head_kv {
                    ks[(h * al + slot) * dk..][..dk].copy_from_slice(&k[h * dk..][..dk]);
                    vs[(h * al + slot) * dv..][..dv].copy_from_slice(&v[h * dv..][..dv]);
                }
            }
            Store::F16 { k: ks, v: vs } => {
                // Slice conversion: F16C eight at a time where the CPU has it, rounding
                // to nearest even like the scalar conversion.
                for h in 0..self.n_head_kv {
                    ks[(h * al + slot) * dk..][..dk].convert_from_f32_slice(&k[h * dk..][..dk]);
                    vs[(h * al + slot) * dv..][..dv].convert_from_f32_slice(&v[h * dv..][..dv]);
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
    check(p, cache, q, n_tokens, start_pos, out)?;
    attention_at(crate::simd_level(), p, cache, q, n_tokens, start_pos, out);
    Ok(())
}

/// The shape checks of an attention call.
fn check(
    p: &AttnParams,
    cache: &KvCache,
    q: &[f32],
    n_tokens: usize,
    start_pos: usize,
    out: &[f32],
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
    let first = if p.window > 0 {
        (start_pos + 1).saturating_sub(p.window)
    } else {
        0
    };
    if first < cache.oldest() {
        return Err(shape_err(
            "oldest cached position the queries see",
            format!("<= {first}"),
            cache.oldest(),
        ));
    }
    if cache.dtype() == KvDtype::F16 && (dk > MAX_HEAD_DIM || dv > MAX_HEAD_DIM) {
        return Err(shape_err(
            "head dim for F16 KV",
            format!("<= {MAX_HEAD_DIM}"),
            dk.max(dv),
        ));
    }
    Ok(())
}

/// Output rows shared by tasks that each write their own rows.
struct OutRows(*mut f32);
// SAFETY: tasks write disjoint rows of the output, which outlives the parallel region.
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Row `r` (`len` floats) of the output.
    ///
    /// # Safety
    /// The caller must be the only one touching that row, inside the buffer.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, r: usize, len: usize) -> &mut [f32] {
        // SAFETY: per the contract above.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(r * len), len) }
    }
}

/// Query tokens per task of the tiled (prefill) kernel. A task takes every query head of
/// one KV head (GQA) for its tokens, so each K/V tile is widened once for all of them. Rows
/// are independent (every score and output element is its own chain), so this only trades
/// K/V packing per task against balance across threads; the bits do not depend on it.
const TILE_TOKENS: usize = 16;

/// Most query rows (tokens x heads) one tiled task holds.
const TILE_ROWS: usize = 256;

/// How the tiled kernel cuts a call: `heads` query heads (of one KV head) by `tokens` tokens
/// per task.
#[derive(Clone, Copy)]
struct TileShape {
    heads: usize,
    tokens: usize,
    /// Head chunks per KV head (1 unless a KV head serves more than `TILE_ROWS` heads).
    chunks: usize,
    tiles: usize,
}

impl TileShape {
    fn new(group: usize, n_tokens: usize) -> TileShape {
        let heads = group.clamp(1, TILE_ROWS);
        let tokens = (TILE_ROWS / heads).clamp(1, TILE_TOKENS);
        TileShape {
            heads,
            tokens,
            chunks: group.div_ceil(heads),
            tiles: n_tokens.div_ceil(tokens),
        }
    }
}

/// [`attention`] with the arithmetic of one SIMD level (shapes already checked).
pub(crate) fn attention_at(
    level: SimdLevel,
    p: &AttnParams,
    cache: &KvCache,
    q: &[f32],
    n_tokens: usize,
    start_pos: usize,
    out: &mut [f32],
) {
    let job = Job::new(level, p, cache, q, n_tokens, start_pos, out);
    let work = n_tokens * p.n_head * (start_pos + n_tokens) * (cache.dk + cache.dv);
    if work < 64 * 1024 {
        (0..job.tasks()).for_each(|t| job.run(t));
    } else {
        crate::pool::run(job.tasks(), |t| job.run(t));
    }
}

/// One attention call of [`attention_many`].
pub struct AttnCall<'a> {
    pub params: &'a AttnParams,
    pub cache: &'a KvCache,
    pub q: &'a [f32],
    pub n_tokens: usize,
    pub start_pos: usize,
    pub out: &'a mut [f32],
}

/// Several [`attention`] calls (the sequences of a batch, each over its own cache) as ONE
/// parallel region over all their (token, head) tasks: decoding many short sequences is
/// many tiny calls, which one by one would each pay a region and leave threads idle. Each
/// output is computed exactly as its own call computes it.
pub fn attention_many(calls: &mut [AttnCall]) -> Result<(), ComputeError> {
    let level = crate::simd_level();
    for c in calls.iter_mut() {
        // The shape checks of a single call (an empty output runs nothing).
        check(c.params, c.cache, c.q, c.n_tokens, c.start_pos, c.out)?;
    }
    let jobs: Vec<Job> = calls
        .iter_mut()
        .map(|c| {
            Job::new(
                level,
                c.params,
                c.cache,
                c.q,
                c.n_tokens,
                c.start_pos,
                c.out,
            )
        })
        .collect();
    let mut starts = Vec::with_capacity(jobs.len() + 1);
    let mut total = 0;
    for j in &jobs {
        starts.push(total);
        total += j.tasks();
    }
    starts.push(total);
    crate::pool::run(total, |t| {
        let i = starts.partition_point(|&s| s <= t) - 1;
        jobs[i].run(t - starts[i]);
    });
    Ok(())
}

/// Which kernel a call runs.
#[derive(Clone, Copy)]
enum Kind {
    /// F16 cache, a long batch: ggml's tiled flash attention.
    F16Tiled(TileShape),
    /// F16 cache, a short batch: one flash-attention row per (token, head).
    F16Rows,
    /// F32 cache: plain attention per (token, head).
    F32Rows,
}

/// One attention call cut into independent tasks, each writing its own output rows.
struct Job<'a> {
    level: SimdLevel,
    p: &'a AttnParams,
    cache: &'a KvCache,
    q: &'a [f32],
    start_pos: usize,
    n_tokens: usize,
    rows: OutRows,
    kind: Kind,
}

impl<'a> Job<'a> {
    fn new(
        level: SimdLevel,
        p: &'a AttnParams,
        cache: &'a KvCache,
        q: &'a [f32],
        n_tokens: usize,
        start_pos: usize,
        out: &'a mut [f32],
    ) -> Self {
        let kind = match cache.store {
            Store::F16 { .. } if n_tokens >= FA_TILE_Q => {
                Kind::F16Tiled(TileShape::new(p.n_head / cache.n_head_kv, n_tokens))
            }
            Store::F16 { .. } => Kind::F16Rows,
            Store::F32 { .. } => Kind::F32Rows,
        };
        Job {
            level,
            p,
            cache,
            q,
            start_pos,
            n_tokens,
            rows: OutRows(out.as_mut_ptr()),
            kind,
        }
    }

    fn tasks(&self) -> usize {
        match self.kind {
            Kind::F16Tiled(t) => self.cache.n_head_kv * t.chunks * t.tiles,
            Kind::F16Rows | Kind::F32Rows => self.n_tokens * self.p.n_head,
        }
    }

    fn first_of(&self, pos: usize) -> usize {
        if self.p.window > 0 {
            (pos + 1).saturating_sub(self.p.window)
        } else {
            0
        }
    }

    /// One KV head of an F16 cache; a latent cache's values are its keys' first dv
    /// elements (stride dk).
    fn f16_head(&self, k: &'a [f16], v: &'a [f16], kvh: usize) -> flash::Head<'a> {
        let c = self.cache;
        let (dk, dv, al) = (c.dk, c.dv, c.alloc);
        let keys = &k[kvh * al * dk..][..al * dk];
        flash::Head {
            k: keys,
            v: if c.latent {
                keys
            } else {
                &v[kvh * al * dv..][..al * dv]
            },
            dk,
            dv,
            v_stride: if c.latent { dk } else { dv },
            slots: c.slots,
            len: c.len,
        }
    }

    fn run(&self, task: usize) {
        let (p, c, q) = (self.p, self.cache, self.q);
        let (dk, dv, al) = (c.dk, c.dv, c.alloc);
        let group = p.n_head / c.n_head_kv;
        let level = self.level;
        match (&c.store, self.kind) {
            (Store::F16 { k, v }, Kind::F16Tiled(ts)) => {
                let (kvh, rest) = (task / (ts.chunks * ts.tiles), task % (ts.chunks * ts.tiles));
                let (chunk, tile) = (rest / ts.tiles, rest % ts.tiles);
                let h0 = kvh * group + chunk * ts.heads;
                let nh = ts.heads.min((kvh + 1) * group - h0);
                let t0 = tile * ts.tokens;
                let t1 = (t0 + ts.tokens).min(self.n_tokens);
                let head = self.f16_head(k, v, kvh);
                // Row r is token t0 + r / nh of head h0 + r % nh.
                let n_rows = (t1 - t0) * nh;
                let mut ranges = [(0usize, 0usize); TILE_ROWS];
                for (r, range) in ranges[..n_rows].iter_mut().enumerate() {
                    let pos = self.start_pos + t0 + r / nh;
                    *range = (self.first_of(pos), pos);
                }
                let row_of = |r: usize| (t0 + r / nh) * p.n_head + h0 + r % nh;
                let qrow = |r: usize| &q[row_of(r) * dk..][..dk];
                flash::tiled(level, p, &head, qrow, &ranges[..n_rows], |r, o| {
                    // SAFETY: row (t0 + r / nh, h0 + r % nh) belongs to this task only.
                    unsafe { self.rows.row(row_of(r), dv) }.copy_from_slice(o)
                });
            }
            (Store::F16 { k, v }, _) => {
                let (t, h) = (task / p.n_head, task % p.n_head);
                let pos = self.start_pos + t;
                let head = self.f16_head(k, v, h / group);
                // SAFETY: row `task` belongs to this task only.
                let o = unsafe { self.rows.row(task, dv) };
                let qh = &q[task * dk..][..dk];
                flash::decode_row(level, p, &head, qh, self.first_of(pos), pos, o);
            }
            (Store::F32 { k, v }, _) => {
                thread_local! {
                    // Per-thread score buffer, kept across calls so decoding does not allocate.
                    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
                }
                let (t, h) = (task / p.n_head, task % p.n_head);
                let kvh = h / group;
                let pos = self.start_pos + t;
                let slot = |j: usize| kvh * al + j % c.slots;
                let key = |j: usize| &k[slot(j) * dk..][..dk];
                let val = |j: usize| {
                    if c.latent {
                        &k[slot(j) * dk..][..dv]
                    } else {
                        &v[slot(j) * dv..][..dv]
                    }
                };
                // SAFETY: row `task` belongs to this task only.
                let o = unsafe { self.rows.row(task, dv) };
                let qh = &q[task * dk..][..dk];
                SCORES.with(|s| {
                    let s = &mut s.borrow_mut();
                    plain(p, qh, self.first_of(pos), pos, key, val, s, o)
                });
            }
        }
    }
}

/// Scores for keys `first..=pos`, soft cap then scale (ggml's soft_max_ext order), softmax,
/// weighted sum of values: llama.cpp's recipe without flash attention.
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
) {
    scores.clear();
    for j in first..=pos {
        let dot: f64 = key(j).iter().zip(q).map(|(a, &b)| (a * b) as f64).sum();
        let mut s = dot as f32;
        if p.softcap != 0.0 {
            s = (s * (1.0 / p.softcap)).tanh() * p.softcap;
        }
        s *= p.scale;
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

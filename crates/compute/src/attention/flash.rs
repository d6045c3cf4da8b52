//! ggml's two CPU flash-attention kernels for an F16 KV cache, step for step:
//!
//! * `decode_row` (batches under 64 queries, so every decode step): Q rounded to f16, one f16
//!   dot per key, online softmax with libm `expf`, V accumulated in an f16 buffer.
//! * `tiled` (batches of 64 or more): Q kept in f32, keys and values widened to f32 in tiles
//!   of 64 positions, scores by a fused-chain matrix product, a per-tile online softmax with
//!   the vector exp, and V accumulated in f32 by a second matrix product.
//!
//! Tile boundaries are multiples of 64 positions from position 0, as in llama.cpp's cache
//! for one fresh sequence; masked keys inside a tile get probability 0, as there.

use half::f16;
use half::slice::HalfFloatSliceExt;
use quant::dispatch::SimdLevel;
use std::cell::RefCell;

use super::kernels;
use super::AttnParams;

/// Largest head dimension the decode path keeps on the stack.
const MAX_D: usize = super::MAX_HEAD_DIM;

/// Keys per tile of the tiled kernel (GGML_FA_TILE_KV).
const KV_TILE: usize = 64;

/// One KV head, slot-major: position `j` (below `len`) is in slot `j % slots` of `k` (`dk`
/// halves per slot) and `v` (`dv` halves at every `v_stride`: `dv` for a value store of its
/// own, `dk` when the values are the keys' prefix, as in a latent cache).
pub(super) struct Head<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub dk: usize,
    pub dv: usize,
    pub v_stride: usize,
    pub slots: usize,
    pub len: usize,
}

impl Head<'_> {
    fn key_at(&self, slot: usize) -> &[f16] {
        &self.k[slot * self.dk..][..self.dk]
    }

    fn value_at(&self, slot: usize) -> &[f16] {
        &self.v[slot * self.v_stride..][..self.dv]
    }

    /// Widens the rows (`d` halves every `stride`) of positions `j0..j0 + out.len() / d` of
    /// `src` into `out`. Tiles start at multiples of 64 and rings hold a multiple of 256
    /// slots (or never wrap), so a tile's slots are one run.
    fn widen(&self, src: &[f16], d: usize, stride: usize, j0: usize, out: &mut [f32]) {
        let s0 = j0 % self.slots;
        let n = out.len() / d;
        debug_assert!(s0 + n <= self.slots, "tile crosses the ring's end");
        if stride == d {
            src[s0 * d..(s0 + n) * d].convert_to_f32_slice(out);
        } else {
            // Widening is exact, so row by row gives the same floats.
            for (r, o) in out.chunks_exact_mut(d).enumerate() {
                src[(s0 + r) * stride..][..d].convert_to_f32_slice(o);
            }
        }
    }
}

fn f16_bytes(x: &[f16]) -> &[u8] {
    // SAFETY: f16 is a plain 2-byte value with no padding or invalid bit patterns, and u8
    // has alignment 1; the byte slice covers exactly the same memory.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}

/// Scale and soft-cap folded as ggml does: `cap * tanh(s * (scale / cap))`.
fn score_scale(p: &AttnParams) -> (f32, f32) {
    if p.softcap != 0.0 {
        (p.scale / p.softcap, p.softcap)
    } else {
        (p.scale, 0.0)
    }
}

/// One query row `q` against keys `first..=pos` (`out`: dv floats).
pub(super) fn decode_row(
    level: SimdLevel,
    p: &AttnParams,
    head: &Head,
    q: &[f32],
    first: usize,
    pos: usize,
    out: &mut [f32],
) {
    let (dk, dv) = (head.dk, head.dv);
    let dot = kernels::f16_dot(level);
    let mut qh = [f16::ZERO; MAX_D];
    let mut acc = [f16::ZERO; MAX_D];
    let (qh, acc) = (&mut qh[..dk], &mut acc[..dv]);
    for (d, &s) in qh.iter_mut().zip(q) {
        *d = f16::from_f32(s);
    }
    let qb = f16_bytes(qh);
    let (scale, cap) = score_scale(p);
    let mut m = f32::NEG_INFINITY;
    let mut sum = 0f32;
    // Slots advance with the positions (wrapping at the ring's end) rather than by a
    // division per key.
    let mut slot = first % head.slots;
    for _ in first..=pos {
        let (k, v) = (head.key_at(slot), head.value_at(slot));
        slot = if slot + 1 == head.slots { 0 } else { slot + 1 };
        let mut s = dot(dk, f16_bytes(k), qb) * scale;
        if cap != 0.0 {
            s = cap * s.tanh();
        }
        let mut ms = 1.0f32;
        let mut vs = 1.0f32;
        if s > m {
            let old = m;
            m = s;
            ms = (old - m).exp();
            kernels::scale_f16(level, acc, ms);
        } else {
            vs = (s - m).exp();
        }
        kernels::mad_f16(level, acc, v, vs);
        // Contracted to an FMA by GCC in SIMD builds of ggml, like the f16 accumulator.
        sum = if !kernels::fma_contracted(level) {
            sum * ms + vs
        } else {
            sum.mul_add(ms, vs)
        };
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a.to_f32() * inv;
    }
}

/// Per-thread buffers of the tiled kernel, kept so prefill does not allocate per task.
#[derive(Default)]
struct TileScratch {
    q: Vec<f32>,
    kf: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    kq: Vec<f32>,
    acc: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.clear();
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Query rows `qrow(r)` for `r < ranges.len()`, row r attending to keys
/// `ranges[r].0..=ranges[r].1`; `put(r, out_row)` receives each finished row.
pub(super) fn tiled<'q>(
    level: SimdLevel,
    p: &AttnParams,
    head: &Head,
    qrow: impl Fn(usize) -> &'q [f32],
    ranges: &[(usize, usize)],
    mut put: impl FnMut(usize, &[f32]),
) {
    thread_local! {
        static SCRATCH: RefCell<TileScratch> = RefCell::new(TileScratch::default());
    }
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let (dk, dv, rows) = (head.dk, head.dv, ranges.len());
        let n_keys = head.len;
        let qt = sized(&mut s.q, rows * dk);
        for r in 0..rows {
            qt[r * dk..][..dk].copy_from_slice(qrow(r));
        }
        let acc = sized(&mut s.acc, rows * dv);
        let mut m = [f32::NEG_INFINITY; super::TILE_ROWS];
        let mut sum = [0f32; super::TILE_ROWS];
        let (scale, cap) = score_scale(p);
        let lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        // Tiles entirely masked for every row change nothing (ggml skips them too).
        for ic in (lo / KV_TILE * KV_TILE..=hi).step_by(KV_TILE) {
            let kv = KV_TILE.min(n_keys - ic);
            // K transposed ([dk][tile]) so the score product runs along positions.
            // Widened a whole tile at a time (vectorised by `half`), then transposed.
            let kf = sized(&mut s.kf, kv * dk);
            head.widen(head.k, dk, dk, ic, kf);
            let kt = sized(&mut s.kt, dk * KV_TILE);
            for (t, row) in kf.chunks_exact(dk).enumerate() {
                for (d, &x) in row.iter().enumerate() {
                    kt[d * KV_TILE + t] = x;
                }
            }
            let kq = sized(&mut s.kq, rows * KV_TILE);
            kernels::gemm_acc(level, kq, qt, kt, rows, dk, KV_TILE);
            for (r, row) in kq.chunks_exact_mut(KV_TILE).enumerate() {
                let (first, last) = ranges[r];
                for (t, x) in row.iter_mut().enumerate() {
                    let j = ic + t;
                    *x = if j < first || j > last || t >= kv {
                        f32::NEG_INFINITY
                    } else if cap != 0.0 {
                        (*x * scale).tanh() * cap
                    } else {
                        *x * scale
                    };
                }
                let tile_max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                if tile_max == f32::NEG_INFINITY {
                    row.fill(0.0);
                    continue;
                }
                let new_m = m[r].max(tile_max);
                if new_m > m[r] {
                    let ms = (m[r] - new_m).exp();
                    for a in &mut acc[r * dv..][..dv] {
                        *a *= ms;
                    }
                    sum[r] *= ms;
                }
                m[r] = new_m;
                sum[r] = (sum[r] as f64 + kernels::softmax_tile(level, row, new_m)) as f32;
            }
            let vt = sized(&mut s.vt, KV_TILE * dv);
            head.widen(head.v, dv, head.v_stride, ic, &mut vt[..kv * dv]);
            kernels::gemm_acc(level, acc, kq, vt, rows, KV_TILE, dv);
        }
        for r in 0..rows {
            let inv = if sum[r] == 0.0 { 0.0 } else { 1.0 / sum[r] };
            let o = &mut acc[r * dv..][..dv];
            for a in o.iter_mut() {
                *a *= inv;
            }
            put(r, o);
        }
    });
}

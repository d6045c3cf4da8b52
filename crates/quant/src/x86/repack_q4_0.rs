//! Q4_0 x Q8_0 in the order of llama.cpp's repacked Q4_0 matmul. An x86 build with AVX2
//! moves every Q4_0 matrix whose row count is a multiple of 8 into interleaved 8-row blocks
//! (`q4_0_8x8`) and multiplies it with its own gemv / gemm instead of `vec_dot`. Both keep
//! one float accumulator per output and add each block's exact integer dot with one fused
//! multiply-add, `acc = fma(isum, d_w * d_x, acc)`, whatever the batch size. The interleaved
//! layout is only ggml's way to that order, so here it is computed straight from the GGUF
//! rows, eight weight rows per call (one per vector lane).

use std::arch::x86_64::*;

use super::{bytes_from_nibbles_32, f16_at};
use crate::q4_0::{BLOCK, BYTES};
use crate::q8_0::BYTES as X_BYTES;

/// Weight rows per call: one per f32 lane of a 256-bit accumulator.
pub(crate) const ROWS: usize = 8;

/// The eight lanes' sums of `p[r]` in lane `r` (integer adds, so any tree gives the same).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn reduce8(p: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]);
    let h23 = _mm256_hadd_epi32(p[2], p[3]);
    let h45 = _mm256_hadd_epi32(p[4], p[5]);
    let h67 = _mm256_hadd_epi32(p[6], p[7]);
    // Per 128-bit half: the half-row sums of rows 0..4 and 4..8.
    let lo = _mm256_hadd_epi32(h01, h23);
    let hi = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256(lo, hi, 0x20),
        _mm256_permute2x128_si256(lo, hi, 0x31),
    )
}

/// The sum of all eight lanes, in every lane.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_broadcast(v: __m256i) -> __m256i {
    let t = _mm256_hadd_epi32(v, v);
    let t = _mm256_hadd_epi32(t, t);
    _mm256_add_epi32(t, _mm256_permute2x128_si256(t, t, 0x01))
}

/// An 8x8 transpose of 32-bit elements: lane `r` of result `k` is lane `k` of `a[r]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn transpose8(a: [__m256i; 8]) -> [__m256i; 8] {
    let (t0, t1) = (
        _mm256_unpacklo_epi32(a[0], a[1]),
        _mm256_unpackhi_epi32(a[0], a[1]),
    );
    let (t2, t3) = (
        _mm256_unpacklo_epi32(a[2], a[3]),
        _mm256_unpackhi_epi32(a[2], a[3]),
    );
    let (t4, t5) = (
        _mm256_unpacklo_epi32(a[4], a[5]),
        _mm256_unpackhi_epi32(a[4], a[5]),
    );
    let (t6, t7) = (
        _mm256_unpacklo_epi32(a[6], a[7]),
        _mm256_unpackhi_epi32(a[6], a[7]),
    );
    // Per 128-bit half h: u[k] holds element 4h + k of rows 0..4 (u[k + 4]: rows 4..8).
    let u = [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
        _mm256_unpacklo_epi64(t4, t6),
        _mm256_unpackhi_epi64(t4, t6),
        _mm256_unpacklo_epi64(t5, t7),
        _mm256_unpackhi_epi64(t5, t7),
    ];
    // Spelled out: a closure would not inherit the target features.
    [
        _mm256_permute2x128_si256(u[0], u[4], 0x20),
        _mm256_permute2x128_si256(u[1], u[5], 0x20),
        _mm256_permute2x128_si256(u[2], u[6], 0x20),
        _mm256_permute2x128_si256(u[3], u[7], 0x20),
        _mm256_permute2x128_si256(u[0], u[4], 0x31),
        _mm256_permute2x128_si256(u[1], u[5], 0x31),
        _mm256_permute2x128_si256(u[2], u[6], 0x31),
        _mm256_permute2x128_si256(u[3], u[7], 0x31),
    ]
}

/// `acc` plus unsigned-by-signed byte products summed in groups of four. The operands here
/// (activations offset to 0..255, weights in -8..7) keep `maddubs`'s 16-bit pair sums far
/// from saturation, so this is exact.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_acc_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
    )
}

/// [`dot_acc_avx2`] in one VNNI instruction (same integers).
#[inline]
#[target_feature(enable = "avx2,avx512vl,avx512vnni")]
pub(super) fn dot_acc_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, s)
}

macro_rules! kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the 8 weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Lane `r` of result `t` is the dot of
        /// weight row `r` with activation row `t`.
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize>(
            nb: usize,
            w: [*const u8; ROWS],
            x: [*const u8; R],
        ) -> [__m256; R] {
            let mut acc = [_mm256_setzero_ps(); R];
            let bias = _mm256_set1_epi8(0x80u8 as i8);
            for i in 0..nb {
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    let mut d = [0u16; ROWS];
                    let mut raw = [_mm256_setzero_si256(); ROWS];
                    for ((d, q), wr) in d.iter_mut().zip(raw.iter_mut()).zip(w) {
                        let b = wr.add(i * BYTES);
                        *d = (b as *const u16).read_unaligned();
                        *q = bytes_from_nibbles_32(b.add(2));
                    }
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
                    if R < 3 {
                        // Too few tokens to pay for the transpose: per token, the products
                        // of the raw nibbles (0..15) summed across lanes, minus 8 * sum(x).
                        for (acc, xr) in acc.iter_mut().zip(x) {
                            let bx = xr.add(i * X_BYTES);
                            let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                            let zero = _mm256_setzero_si256();
                            let off = hsum_broadcast($dot(zero, _mm256_set1_epi8(8), qy));
                            // A loop, not `map`: closures lose the target features.
                            let mut p = [zero; ROWS];
                            for (p, &q) in p.iter_mut().zip(&raw) {
                                *p = $dot(zero, q, qy);
                            }
                            let isum = _mm256_sub_epi32(reduce8(p), off);
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at(bx)));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, *acc);
                        }
                        continue;
                    }
                    // Lane r of v[k]: quants 4k..4k+4 of row r, so a product with activation
                    // quants 4k..4k+4 in every lane lands in the row's own lane and no
                    // horizontal sum is needed.
                    for q in raw.iter_mut() {
                        *q = _mm256_sub_epi8(*q, _mm256_set1_epi8(8));
                    }
                    let v = transpose8(raw);
                    // The activations enter unsigned as x + 128; the excess 128 * sum(w) is
                    // per row, the same for every token.
                    let mut excess = _mm256_setzero_si256();
                    for &vk in &v {
                        excess = $dot(excess, bias, vk);
                    }
                    for (acc, xr) in acc.iter_mut().zip(x) {
                        let bx = xr.add(i * X_BYTES);
                        // Offset once into a stack copy, then each group of four quants is
                        // broadcast straight from memory (a load, not a shuffle).
                        let mut xu = [0i32; 8];
                        _mm256_storeu_si256(
                            xu.as_mut_ptr() as *mut __m256i,
                            _mm256_xor_si256(_mm256_loadu_si256(bx.add(2) as *const __m256i), bias),
                        );
                        let mut isum = _mm256_setzero_si256();
                        for (&xk, &vk) in xu.iter().zip(&v) {
                            isum = $dot(isum, _mm256_set1_epi32(xk), vk);
                        }
                        let isum = _mm256_sub_epi32(isum, excess);
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at(bx)));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, *acc);
                    }
                }
            }
            acc
        }
    };
}

kernel!(gemm_avx2, "avx2,fma,f16c", dot_acc_avx2);
kernel!(
    gemm_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_acc_vnni
);

/// Stores result `t` of a kernel (8 weight rows) at `out[t * 8..]`.
#[inline]
#[target_feature(enable = "avx")]
pub(super) fn store<const R: usize>(acc: [__m256; R], out: &mut [f32]) {
    for (a, o) in acc.iter().zip(out.chunks_exact_mut(ROWS)) {
        // SAFETY: `o` is exactly 8 floats; unaligned store.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) }
    }
}

/// The safe tile entry of an 8-row repacked-order kernel (`$kernel::<R>` returning one
/// `__m256` per token): checks the buffers with the calling module's `BLOCK`, `BYTES`,
/// `X_BYTES` and `ROWS`, and dispatches on the number of tokens.
macro_rules! entry {
    ($name:ident, $kernel:ident, $toks:literal, $what:literal) => {
        #[doc = concat!("Eight ", $what, " weight rows times one to `", stringify!($toks), "` Q8_0 activation rows in llama.cpp's")]
        /// repacked order (see [`crate::dispatch::TileFn`]).
        pub(crate) fn $name(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, BLOCK, w, BYTES, x, X_BYTES, out, ROWS, $toks);
            let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
            macro_rules! go {
                ($r:literal) => {
                    super::repack_q4_0::store(
                        $kernel::<$r>(nb, wp, std::array::from_fn(|i| x[i].as_ptr())),
                        out,
                    )
                };
            }
            // SAFETY: only reachable through the dispatch table after detection of the
            // kernel's features; `blocks_tile` checked every length and the tile shape.
            unsafe {
                match x.len() {
                    1 => go!(1),
                    2 => go!(2),
                    3 => go!(3),
                    4 => go!(4),
                    5 => go!(5),
                    6 => go!(6),
                    7 => go!(7),
                    _ => go!(8),
                }
            }
        }
    };
}

pub(super) use entry;

// AVX2 has 16 vector registers: 4 accumulators beside the 8 transposed weight vectors.
entry!(tile_avx2, gemm_avx2, 4, "Q4_0");
entry!(tile_avx512, gemm_avx512, 8, "Q4_0");

/// Most activation rows per call at each level.
pub(crate) const TOKS_AVX2: usize = 4;
pub(crate) const TOKS_AVX512: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::testkit::simd::Rng;

    /// `count` rows of `nb` random blocks of `bytes` bytes, each led by a `scale` f16.
    fn rows(
        rng: &mut Rng,
        count: usize,
        nb: usize,
        bytes: usize,
        scale: fn(&mut Rng) -> u16,
    ) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| {
                let mut r: Vec<u8> = (0..nb * bytes).map(|_| rng.next() as u8).collect();
                for b in r.chunks_exact_mut(bytes) {
                    b[..2].copy_from_slice(&scale(rng).to_le_bytes());
                }
                r
            })
            .collect()
    }

    /// Every tile shape at every level equals the scalar reference of the repacked order bit
    /// for bit, including extreme quants (-128 activations, all-15 nibbles) and f16 scales
    /// at the range ends.
    #[test]
    fn tiles_equal_the_scalar_repacked_order() {
        let levels: Vec<(SimdLevel, crate::dispatch::TileFn, usize)> = [
            (
                SimdLevel::Avx2,
                tile_avx2 as crate::dispatch::TileFn,
                TOKS_AVX2,
            ),
            (SimdLevel::Avx512, tile_avx512, TOKS_AVX512),
        ]
        .into_iter()
        .filter(|(l, _, _)| *l <= detected_level())
        .collect();
        let mut rng = Rng::new(40);
        let scales: [fn(&mut Rng) -> u16; 4] = [
            |r| half::f16::from_f32(r.normal() * 0.01).to_bits(),
            |r| 0x7bff | ((r.next() as u16 & 1) << 15),
            |r| 1 + (r.below(0x3ff) as u16),
            |r| [0u16, 0x8000, 0x3c00, 0x7bff][r.below(4) as usize],
        ];
        for (k, scale) in scales.iter().enumerate() {
            for nb in [1usize, 3, 18, 48] {
                let n = nb * BLOCK;
                let mut ws = rows(&mut rng, ROWS, nb, BYTES, *scale);
                let mut xs = rows(&mut rng, TOKS_AVX512, nb, X_BYTES, *scale);
                if k == 3 {
                    // Extreme quants: every nibble 15 (or 0) and activations at -128 / 127.
                    for (i, w) in ws.iter_mut().enumerate() {
                        for b in w.chunks_exact_mut(BYTES) {
                            b[2..].fill(if i % 2 == 0 { 0xff } else { 0 });
                        }
                    }
                    for (i, x) in xs.iter_mut().enumerate() {
                        for b in x.chunks_exact_mut(X_BYTES) {
                            b[2..].fill(if i % 2 == 0 { 0x80 } else { 0x7f });
                        }
                    }
                }
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                for (level, f, max) in &levels {
                    for toks in 1..=*max {
                        let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| r.as_slice()).collect();
                        let mut out = vec![0f32; ROWS * toks];
                        f(n, &wr, &xr, &mut out);
                        for t in 0..toks {
                            for r in 0..ROWS {
                                let want = crate::q4_0::vec_dot_repacked(n, wr[r], xr[t]);
                                assert_eq!(
                                    out[t * ROWS + r].to_bits(),
                                    want.to_bits(),
                                    "{level:?} scales#{k} nb={nb} toks={toks} t={t} r={r}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

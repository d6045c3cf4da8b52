//! AVX-512 tiles for Q8_0 and Q5_0 batches in `vec_dot` order (ggml's x86
//! `ggml_vec_dot_q{8,5}_0_q8_0`, which llamafile's sgemm matches): two tokens share a 512-bit
//! register (token 2p in the low half, 2p + 1 in the high half) against the same weight
//! block, so the integer products, conversions and fused multiply-adds of two (row, token)
//! pairs take one instruction each. Every pair keeps its own 8-lane accumulator (one half of
//! a register) and its own `hsum_float_8`, so each result is exactly the single-row kernel's.

use std::arch::x86_64::*;

use super::{bytes_from_bits_32, bytes_from_nibbles_32, f16_at, hsum_float_8};

/// Weight rows and most tokens per call: 16 accumulators, with the four token pairs' quants
/// and scales, fill most of the 32 vector registers.
pub(crate) const ROWS: usize = 4;
pub(crate) const TOKS: usize = 8;

/// Q8_0 weight quants of the block at `b`.
///
/// # Safety
/// `b` must point at a readable Q8_0 block.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quants_q8_0(b: *const u8) -> __m256i {
    // SAFETY: 32 quant bytes follow the 2-byte scale (caller).
    unsafe { _mm256_loadu_si256(b.add(2) as *const __m256i) }
}

/// Q5_0 weight quants of the block at `b`, as ggml's AVX2 kernel forms them: nibbles with
/// bit 4 from `qh`, offset to [-16, 15] by setting the high bits where `qh` is clear.
///
/// # Safety
/// `b` must point at a readable Q5_0 block.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quants_q5_0(b: *const u8) -> __m256i {
    // SAFETY: the block holds 4 `qh` bytes after the scale and 16 nibble bytes after them.
    unsafe {
        let hi = _mm256_andnot_si256(bytes_from_bits_32(b.add(2)), _mm256_set1_epi8(0xf0u8 as i8));
        _mm256_or_si256(bytes_from_nibbles_32(b.add(6)), hi)
    }
}

macro_rules! kernel {
    ($name:ident, $tile:ident, $bytes:expr, $quants:ident) => {
        /// # Safety
        /// The CPU must have AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C); each of the `ROWS`
        /// weight rows and `2 * P` activation rows must hold `nb` blocks. Result `[r][p]`
        /// holds row `r` against tokens `2p` (low half) and `2p + 1` (high half).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const P: usize>(
            nb: usize,
            w: [*const u8; ROWS],
            x: [[*const u8; 2]; P],
        ) -> [[__m512; P]; ROWS] {
            let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
            for i in 0..nb {
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    let mut y = [_mm512_setzero_si512(); P];
                    let mut dx = [_mm512_setzero_ps(); P];
                    for ((y, dx), [a, b]) in y.iter_mut().zip(dx.iter_mut()).zip(x) {
                        let (ba, bb) = (a.add(i * X_BYTES), b.add(i * X_BYTES));
                        *y = _mm512_inserti64x4(
                            _mm512_castsi256_si512(_mm256_loadu_si256(ba.add(2) as *const __m256i)),
                            _mm256_loadu_si256(bb.add(2) as *const __m256i),
                            1,
                        );
                        *dx = _mm512_mask_blend_ps(
                            0xff00,
                            _mm512_set1_ps(f16_at(ba)),
                            _mm512_set1_ps(f16_at(bb)),
                        );
                    }
                    for (acc, wr) in acc.iter_mut().zip(w) {
                        let bw = wr.add(i * $bytes);
                        let dw = _mm512_set1_ps(f16_at(bw));
                        let q = _mm512_broadcast_i64x4($quants(bw));
                        // ggml's sign trick, bit for bit (including its wrap of -(-128)):
                        // |w| times y negated where w < 0.
                        let (aq, neg) = (_mm512_abs_epi8(q), _mm512_movepi8_mask(q));
                        for ((acc, y), dx) in acc.iter_mut().zip(y).zip(dx) {
                            let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aq, sy);
                            // d_w * d_x per half, as ggml rounds the scalar product.
                            let d = _mm512_mul_ps(dw, dx);
                            *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), *acc);
                        }
                    }
                }
            }
            acc
        }

        /// `ROWS` weight rows times one to `TOKS` Q8_0 activation rows (see
        /// [`crate::dispatch::TileFn`]), each result bit-identical to the `avx512` single-row
        /// kernel of the format.
        pub(crate) fn $tile(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, 32, w, $bytes, x, X_BYTES, out, ROWS, TOKS);
            let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
            // An odd last token is paired with itself; its copy is dropped.
            let xp = |i: usize| x[i.min(x.len() - 1)].as_ptr();
            let pair = |p: usize| [xp(2 * p), xp(2 * p + 1)];
            let m = x.len();
            // SAFETY: only reachable through the dispatch table after AVX-512 VNNI
            // detection; `blocks_tile` checked every length and the tile shape.
            unsafe {
                match m.div_ceil(2) {
                    1 => store($name(nb, wp, [pair(0)]), m, out),
                    2 => store($name(nb, wp, [pair(0), pair(1)]), m, out),
                    3 => store($name(nb, wp, [pair(0), pair(1), pair(2)]), m, out),
                    _ => store($name(nb, wp, [pair(0), pair(1), pair(2), pair(3)]), m, out),
                }
            }
        }
    };
}

/// Each half-register accumulator reduced into `out[t * ROWS + r]`, for tokens below `m`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store<const P: usize>(acc: [[__m512; P]; ROWS], m: usize, out: &mut [f32]) {
    for (r, row) in acc.iter().enumerate() {
        for (p, a) in row.iter().enumerate() {
            let lo = _mm512_castps512_ps256(*a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(*a), 1));
            for (t, half) in [(2 * p, lo), (2 * p + 1, hi)] {
                if t < m {
                    out[t * ROWS + r] = hsum_float_8(half);
                }
            }
        }
    }
}

const X_BYTES: usize = crate::q8_0::BYTES;

kernel!(gemm_q8_0, tile_q8_0, crate::q8_0::BYTES, quants_q8_0);
kernel!(gemm_q5_0, tile_q5_0, crate::q5_0::BYTES, quants_q5_0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, kernel, SimdLevel};
    use crate::x86::testkit::Rng;
    use crate::GgmlType;

    /// Every tile shape equals the single-row `avx512` kernel bit for bit, on random blocks,
    /// extreme quants (-128 on both sides, where ggml's sign trick wraps) and f16 scales at
    /// the range ends.
    #[test]
    fn tiles_equal_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(55);
        let cases: [(GgmlType, crate::dispatch::TileFn); 2] =
            [(GgmlType::Q8_0, tile_q8_0), (GgmlType::Q5_0, tile_q5_0)];
        for (ty, tile) in cases {
            let one = kernel(ty, SimdLevel::Avx512).unwrap();
            for case in 0..5 {
                for nb in [1usize, 3, 18, 48] {
                    let n = nb * 32;
                    let mut row = |bytes: usize| -> Vec<u8> {
                        let mut r: Vec<u8> = (0..nb * bytes).map(|_| rng.next() as u8).collect();
                        for b in r.chunks_exact_mut(bytes) {
                            let d: u16 = match case {
                                0 | 1 => half::f16::from_f32(rng.normal() * 0.02).to_bits(),
                                2 => 0x7bff | ((rng.next() as u16 & 1) << 15),
                                3 => 1 + rng.below(0x3ff) as u16,
                                _ => [0u16, 0x8000, 0x3c00][rng.below(3) as usize],
                            };
                            b[..2].copy_from_slice(&d.to_le_bytes());
                            if case == 1 {
                                for q in &mut b[2..] {
                                    *q = [0x80u8, 0x7f, 0x81, 0, 0xff][rng.below(5) as usize];
                                }
                            }
                        }
                        r
                    };
                    let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row(ty.type_size())).collect();
                    let xs: Vec<Vec<u8>> = (0..TOKS).map(|_| row(X_BYTES)).collect();
                    let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                    for toks in 1..=TOKS {
                        let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| r.as_slice()).collect();
                        let mut out = vec![0f32; ROWS * toks];
                        tile(n, &wr, &xr, &mut out);
                        for t in 0..toks {
                            for r in 0..ROWS {
                                let want = one(n, wr[r], xr[t]);
                                assert_eq!(
                                    out[t * ROWS + r].to_bits(),
                                    want.to_bits(),
                                    "{ty} case {case} nb={nb} toks={toks} t={t} r={r}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

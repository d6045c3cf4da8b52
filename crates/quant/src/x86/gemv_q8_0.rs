//! Q8_0 x Q8_0 for one activation row against eight weight rows at once (generation), in
//! exactly the order of ggml's `ggml_vec_dot_q8_0_q8_0` (see `q8_0.rs`): per row, one
//! 8-lane accumulator, per block `acc = fma(d_w * d_x, lanes, acc)`, then `hsum_float_8`.
//! Two rows share a 512-bit register (row 2p in the low half, 2p + 1 in the high half), so
//! the integer products, conversions and multiply-adds of two rows take one instruction each,
//! and the eight rows' f16 scales are widened with one conversion per block. Per-row sums are
//! untouched: the halves never mix until each is reduced on its own.

use std::arch::x86_64::*;

use super::{f16_at, hsum_float_8};
use crate::q8_0::{BLOCK, BYTES};

/// Weight rows per call.
pub(crate) const ROWS: usize = 8;

/// # Safety
/// The CPU must have AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C); each of the 8 weight rows and
/// the activation row must hold `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_avx512(nb: usize, w: [*const u8; ROWS], x: *const u8) -> [f32; ROWS] {
    let mut acc = [_mm512_setzero_ps(); ROWS / 2];
    // Lane index vectors that spread scale 2p over the low half and 2p + 1 over the high.
    let spread: [__m512i; ROWS / 2] = std::array::from_fn(|p| {
        let (a, b) = (2 * p as i32, 2 * p as i32 + 1);
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
    });
    let mut ahead =
        super::NextGroup::new(w[0].wrapping_add(ROWS * nb * BYTES), ROWS * nb * BYTES, nb);
    for i in 0..nb {
        // SAFETY: block i of every row is in bounds (caller); offsets stay inside a block.
        unsafe {
            let bx = x.add(i * BYTES);
            let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(bx.add(2) as *const __m256i));
            let dx = _mm256_set1_ps(f16_at(bx));
            let b: [*const u8; ROWS] = w.map(|r| r.add(i * BYTES));
            ahead.step();
            // Every other block (68 bytes), the line 512 bytes on in each row, into L1, on
            // top of the next group's share into L2. 1B Q8_0 decode, alternated three times
            // in one run: 15.3-16.1 t/s with the matmul's group prefetch, 15.4-16.1 with the
            // share alone, 17.1-17.9 with both; SmolLM2 Q8_0 (rows of 612 bytes, the model in
            // cache): 142-150 with the group prefetch, 136-157 with both.
            if i % 2 == 0 {
                for r in b {
                    _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(512) as *const i8);
                }
            }
            let bits = _mm_set_epi16(
                (b[7] as *const i16).read_unaligned(),
                (b[6] as *const i16).read_unaligned(),
                (b[5] as *const i16).read_unaligned(),
                (b[4] as *const i16).read_unaligned(),
                (b[3] as *const i16).read_unaligned(),
                (b[2] as *const i16).read_unaligned(),
                (b[1] as *const i16).read_unaligned(),
                (b[0] as *const i16).read_unaligned(),
            );
            // d_w * d_x per row, each rounded once as ggml's scalar product is.
            let d = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(bits), dx));
            for (p, acc) in acc.iter_mut().enumerate() {
                let lo = _mm256_loadu_si256(b[2 * p].add(2) as *const __m256i);
                let hi = _mm256_loadu_si256(b[2 * p + 1].add(2) as *const __m256i);
                let q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                // ggml's sign trick, bit for bit (including its wrap of -(-128)): |w| times
                // y negated where w < 0.
                let neg = _mm512_movepi8_mask(q);
                let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(q), sy);
                let dp = _mm512_permutexvar_ps(spread[p], d);
                *acc = _mm512_fmadd_ps(dp, _mm512_cvtepi32_ps(dot), *acc);
            }
        }
    }
    let mut out = [0f32; ROWS];
    for (p, a) in acc.iter().enumerate() {
        let lo = _mm512_castps512_ps256(*a);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(*a), 1));
        out[2 * p] = hsum_float_8(lo);
        out[2 * p + 1] = hsum_float_8(hi);
    }
    out
}

/// Eight Q8_0 weight rows times one Q8_0 activation row (see [`crate::dispatch::TileFn`]),
/// each result bit-identical to the `avx512` single-row kernel.
pub(crate) fn tile_avx512(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
    let nb = super::blocks_tile(n, BLOCK, w, BYTES, x, BYTES, out, ROWS, 1);
    let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
    // SAFETY: only reachable through the dispatch table after AVX-512 VNNI detection;
    // `blocks_tile` checked every length and the tile shape.
    let r = unsafe { gemv_avx512(nb, wp, x[0].as_ptr()) };
    out[..ROWS].copy_from_slice(&r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, kernel, SimdLevel};
    use crate::testkit::simd::Rng;

    /// Equal to the single-row `avx512` kernel bit for bit, on random rows, extreme quants
    /// (-128 weights and activations, where ggml's sign trick wraps) and f16 scales at the
    /// range ends.
    #[test]
    fn equals_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let one = kernel(crate::GgmlType::Q8_0, SimdLevel::Avx512).unwrap();
        let mut rng = Rng::new(80);
        for case in 0..6 {
            for nb in [1usize, 2, 7, 18, 40] {
                let n = nb * BLOCK;
                let mut row = |extreme: bool| -> Vec<u8> {
                    let mut r: Vec<u8> = (0..nb * BYTES).map(|_| rng.next() as u8).collect();
                    for b in r.chunks_exact_mut(BYTES) {
                        let d: u16 = match case {
                            0 | 1 => half::f16::from_f32(rng.normal() * 0.02).to_bits(),
                            2 => 0x7bff | ((rng.next() as u16 & 1) << 15),
                            3 => 1 + rng.below(0x3ff) as u16,
                            _ => [0u16, 0x8000, 0x3c00][rng.below(3) as usize],
                        };
                        b[..2].copy_from_slice(&d.to_le_bytes());
                        if extreme {
                            for q in &mut b[2..] {
                                *q = [0x80u8, 0x7f, 0x81, 0][rng.below(4) as usize];
                            }
                        }
                    }
                    r
                };
                let extreme = case % 2 == 1;
                let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row(extreme)).collect();
                let x = row(extreme);
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                let mut out = [0f32; ROWS];
                tile_avx512(n, &wr, &[&x], &mut out);
                for (r, w) in ws.iter().enumerate() {
                    let want = one(n, w, &x);
                    assert_eq!(
                        out[r].to_bits(),
                        want.to_bits(),
                        "case {case} nb={nb} row {r}: {} vs {want}",
                        out[r]
                    );
                }
            }
        }
    }
}

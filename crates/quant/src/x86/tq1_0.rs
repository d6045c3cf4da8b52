//! TQ1_0 x Q8_K in the order of ggml's AVX2 `ggml_vec_dot_tq1_0_q8_K`: the trits are taken
//! out of the base-3 bytes with 8-bit multiplies by 3^n (shifts and adds) and a "times 3, top
//! two bits" step built from byte averages, multiplied with the activations in 16-bit lanes,
//! the `bsums` taken away (codes are value + 1), pairs widened to 8 i32 lanes, then
//! `acc = fma(lanes, d_x * d_w, acc)` per block and `hsum_float_8` at the end. The lanes are
//! [`crate::tq1_0`]'s `lane_sums`.

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES as X_BYTES;
use crate::tq1_0::BYTES;

/// `q * 9` in each byte (mod 256): `(q << 3) + q` with the bits shifted across bytes masked.
#[inline]
#[target_feature(enable = "avx2")]
fn times9(q: __m256i) -> __m256i {
    _mm256_add_epi8(
        _mm256_and_si256(_mm256_slli_epi16(q, 3), _mm256_set1_epi8(-8)),
        q,
    )
}

/// The trit on top of each byte: `(q * 3) >> 8`, as ggml computes it with averages.
#[inline]
#[target_feature(enable = "avx2")]
fn top_trit(q: __m256i) -> __m256i {
    let q = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
    let q = _mm256_avg_epu8(q, _mm256_avg_epu8(q, _mm256_setzero_si256()));
    _mm256_and_si256(_mm256_srli_epi16(q, 6), _mm256_set1_epi8(3))
}

/// # Safety
/// AVX2, FMA and F16C must be present; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): every offset stays inside block i < nb of its row (caller);
    // unaligned loads.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let bw = w.add(i * BYTES);
            let bx = x.add(i * X_BYTES);
            let y = |off: usize| _mm256_loadu_si256(bx.add(4 + off) as *const __m256i);
            // Bytes 0..32: trits 0..5 against activations 0..160.
            let q0 = _mm256_loadu_si256(bw as *const __m256i);
            let q1 = _mm256_add_epi8(q0, _mm256_add_epi8(q0, q0));
            let q2 = times9(q0);
            let q3 = times9(q1);
            let q4 = times9(q2);
            let p: [__m256i; 5] = [q0, q1, q2, q3, q4];
            let mut c = [_mm256_setzero_si256(); 5];
            for (k, (c, &q)) in c.iter_mut().zip(&p).enumerate() {
                *c = _mm256_maddubs_epi16(top_trit(q), y(32 * k));
            }
            let mut s0 = _mm256_add_epi16(c[0], c[1]);
            let mut s1 = _mm256_add_epi16(c[2], c[3]);
            let mut s2 = c[4];
            // Bytes 32..48 (trits 0..5, activations 160..240) and the 4 bytes of qh
            // (4 trits each, activations 240..256).
            let h0 = _mm_loadu_si128(bw.add(32) as *const __m128i);
            let qh = (bw.add(48) as *const i32).read_unaligned();
            let h1 = _mm_add_epi8(h0, _mm_add_epi8(h0, h0));
            let t9 = |q: __m128i| {
                _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(q, 3), _mm_set1_epi8(-8)), q)
            };
            let h2 = t9(h0);
            let h3 = t9(h1);
            let h4 = t9(h2);
            let h5 = _mm256_and_si256(
                _mm256_mullo_epi16(
                    _mm256_cvtepu8_epi16(_mm_set1_epi32(qh)),
                    _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1),
                ),
                _mm256_set1_epi16(0xff),
            );
            let h5 = _mm_packus_epi16(_mm256_castsi256_si128(h5), _mm256_extracti128_si256(h5, 1));
            let q01 = top_trit(_mm256_set_m128i(h1, h0));
            let q23 = top_trit(_mm256_set_m128i(h3, h2));
            let q45 = top_trit(_mm256_set_m128i(h5, h4));
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(q01, y(160)));
            s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(q23, y(192)));
            s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(q45, y(224)));
            let ysum = _mm256_loadu_si256(bx.add(260) as *const __m256i);
            let s = _mm256_add_epi16(_mm256_sub_epi16(s0, ysum), _mm256_add_epi16(s1, s2));
            let s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
            let dx = (bx as *const f32).read_unaligned();
            let d = _mm256_set1_ps(dx * f16_at(bw.add(52)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
        }
        hsum_float_8(acc)
    }
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BYTES, x, X_BYTES);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // `blocks` checked the lengths.
    unsafe { dot_avx2(nb, w.as_ptr(), x.as_ptr()) }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    super::SimdKernels {
        ty: crate::GgmlType::TQ1_0,
        avx2: super::LevelKernels {
            one: Some(vec_dot_avx2),
            ..super::LevelKernels::NONE
        },
        avx512: super::LevelKernels::NONE,
    }
}

#[cfg(test)]
mod tests {
    use crate::GgmlType::TQ1_0;

    /// Whole matmuls hash to llama.cpp b11434's (scripts/quant-goldens:
    /// `matmul_hash tq1_0 512 32 N plain`; ggml uses `vec_dot` for every batch size here).
    #[test]
    fn equals_llama_cpp_matmul() {
        if !crate::x86::has_avx2() {
            return;
        }
        for (n, want) in [
            (1, 0x0e15_2124_d9f8_73a3u64),
            (3, 0x3e74_b9c4_e5dc_7cf1),
            (9, 0xa575_1709_3080_13ec),
        ] {
            let got =
                crate::testkit::matmul_hash(TQ1_0, crate::tq1_0::quantize, (512, 32, n), &|_| {
                    super::vec_dot_avx2
                });
            assert_eq!(got, want, "{n} tokens");
        }
    }

    /// Every possible packed byte, in every position of a block: the SIMD kernel's lanes are
    /// the scalar lane sums (checked through a one-block dot with one-hot activations).
    #[test]
    fn every_byte_in_every_position_decodes_as_the_scalar_code() {
        if !crate::x86::has_avx2() {
            return;
        }
        let mut r = crate::testkit::simd::Rng::new(9);
        for round in 0..64 {
            let mut w = [0u8; crate::tq1_0::BYTES];
            for (k, b) in w[..52].iter_mut().enumerate() {
                *b = ((round * 52 + k) % 256) as u8;
            }
            w[52..].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
            let xs: Vec<f32> = (0..256).map(|_| r.normal()).collect();
            let mut x = vec![0u8; crate::q8_k::BLOCK_BYTES];
            crate::q8_k::quantize(&xs, &mut x);
            let lanes = crate::tq1_0::lane_sums(&w, &x);
            let d = crate::q8_k::block_d(&x);
            let a: Vec<f32> = lanes.iter().map(|&l| (l as f32).mul_add(d, 0.0)).collect();
            let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
            let want = (t[0] + t[2]) + (t[1] + t[3]);
            assert_eq!(
                super::vec_dot_avx2(256, &w, &x).to_bits(),
                want.to_bits(),
                "round {round}"
            );
        }
    }
}

//! TQ2_0 x Q8_K in the order of ggml's AVX2 `ggml_vec_dot_tq2_0_q8_K`: codes 0..2 times the
//! activations in 16-bit lanes, the `bsums` taken away (codes are value + 1), pairs widened to
//! 8 i32 lanes, then `acc = fma(lanes, d_x * d_w, acc)` per block (GCC contracts ggml's
//! multiply-then-add) and `hsum_float_8` at the end.

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES as X_BYTES;
use crate::tq2_0::BYTES;

/// # Safety
/// AVX2, FMA and F16C must be present; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): every offset stays inside block i < nb of its row (caller);
    // unaligned loads.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let bw = w.add(i * BYTES);
            let bx = x.add(i * X_BYTES);
            let qy = bx.add(4);
            let mut s0 = _mm256_setzero_si256();
            let mut s1 = _mm256_setzero_si256();
            for j in [0usize, 32] {
                let q = _mm256_loadu_si256(bw.add(j) as *const __m256i);
                let c = [
                    _mm256_and_si256(q, m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 6), m3),
                ];
                let p: [__m256i; 4] = std::array::from_fn(|l| {
                    let y = _mm256_loadu_si256(qy.add(j * 4 + l * 32) as *const __m256i);
                    _mm256_maddubs_epi16(c[l], y)
                });
                s0 = _mm256_add_epi16(s0, _mm256_add_epi16(p[0], p[1]));
                s1 = _mm256_add_epi16(s1, _mm256_add_epi16(p[2], p[3]));
            }
            let ysum = _mm256_loadu_si256(bx.add(260) as *const __m256i);
            let s = _mm256_sub_epi16(_mm256_add_epi16(s0, s1), ysum);
            let s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
            let dx = (bx as *const f32).read_unaligned();
            let d = _mm256_set1_ps(dx * f16_at(bw.add(64)));
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
        ty: crate::GgmlType::TQ2_0,
        avx2: super::LevelKernels {
            one: Some(vec_dot_avx2),
            ..super::LevelKernels::NONE
        },
        avx512: super::LevelKernels::NONE,
    }
}

#[cfg(test)]
mod tests {
    use crate::GgmlType::TQ2_0;

    /// Whole matmuls hash to llama.cpp b11434's (scripts/quant-goldens:
    /// `matmul_hash tq2_0 512 32 N plain`; ggml uses `vec_dot` for every batch size here).
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
                crate::testkit::matmul_hash(TQ2_0, crate::tq2_0::quantize, (512, 32, n), &|_| {
                    super::vec_dot_avx2
                });
            assert_eq!(got, want, "{n} tokens");
        }
    }

    /// Random blocks (codes 0..2 and the invalid 3, which ggml's kernel also reads as a
    /// value): the SIMD lanes are the scalar lane sums.
    #[test]
    fn lanes_equal_the_scalar_lanes() {
        if !crate::x86::has_avx2() {
            return;
        }
        let mut r = crate::testkit::simd::Rng::new(3);
        for _ in 0..50 {
            let nb = 3;
            let mut w = vec![0u8; nb * crate::tq2_0::BYTES];
            for b in w.chunks_exact_mut(crate::tq2_0::BYTES) {
                for v in &mut b[..64] {
                    *v = (0..4).fold(0u8, |b, k| b | (r.below(3) as u8) << (2 * k));
                }
                b[64..].copy_from_slice(&half::f16::from_f32(r.normal()).to_bits().to_le_bytes());
            }
            let xs: Vec<f32> = (0..nb * 256).map(|_| r.normal()).collect();
            let mut x = vec![0u8; nb * crate::q8_k::BLOCK_BYTES];
            crate::q8_k::quantize(&xs, &mut x);
            let mut acc = 0f32;
            let mut lanes_acc = [0f32; 8];
            for (bw, bx) in w.chunks_exact(66).zip(x.chunks_exact(292)) {
                let lanes = crate::tq2_0::lane_sums(bw, bx);
                let d =
                    crate::q8_k::block_d(bx) * half::f16::from_le_bytes([bw[64], bw[65]]).to_f32();
                for (a, l) in lanes_acc.iter_mut().zip(lanes) {
                    *a = (l as f32).mul_add(d, *a);
                }
            }
            let t = [
                lanes_acc[0] + lanes_acc[4],
                lanes_acc[1] + lanes_acc[5],
                lanes_acc[2] + lanes_acc[6],
                lanes_acc[3] + lanes_acc[7],
            ];
            acc += (t[0] + t[2]) + (t[1] + t[3]);
            assert_eq!(
                super::vec_dot_avx2(nb * 256, &w, &x).to_bits(),
                acc.to_bits()
            );
        }
    }
}

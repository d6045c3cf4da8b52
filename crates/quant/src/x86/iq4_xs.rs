//! IQ4_XS x Q8_K in llama.cpp's two x86 orders. Both start from the same exact integers: per
//! super-block, 8 lanes each holding `sum_g scale_g * (products of elements 4k..4k+4 of
//! group g)` (grid values through a byte shuffle, products through ggml's sign trick).
//! * `vec_dot` (ggml's AVX2 `ggml_vec_dot_iq4_xs_q8_K`, fewer than 8 tokens): the lanes
//!   converted to float and fused-multiply-added with `d_w * d_x` into 8 lane accumulators,
//!   reduced at the end with `hsum_float_8`.
//! * tiled (llama.cpp's tiled matmul, 8 or more tokens): the lanes summed to one integer `S`,
//!   then `r = d_w * S` and `acc = fma(d_x, r, acc)`.

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8};
use crate::iq4_nl::KVALUES;
use crate::iq4_xs::{group_scale, BYTES};
use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES as X_BYTES;

const W_QS: usize = 8;
const X_QS: usize = 4;

/// The 8 lanes of exact integer sums of one super-block (see the module comment).
///
/// # Safety
/// AVX2 must be present; `bw` must hold one IQ4_XS block and `bx` one Q8_K block.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_lanes(bw: *const u8, bx: *const u8, lut: __m256i) -> __m256i {
    // SAFETY (whole body): every offset stays inside the two blocks; unaligned loads.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let scales = std::slice::from_raw_parts(bw, W_QS);
        let mut sum = _mm256_setzero_si256();
        for g in 0..8 {
            let q = _mm_loadu_si128(bw.add(W_QS + 16 * g) as *const __m128i);
            let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            let v = _mm256_shuffle_epi8(lut, codes);
            let y = _mm256_loadu_si256(bx.add(X_QS + 32 * g) as *const __m256i);
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y, v));
            let ls = _mm256_set1_epi16(group_scale(scales, g) as i16);
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p16, ls));
        }
        sum
    }
}

/// # Safety
/// AVX2, FMA and F16C must be present; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const TILED: bool>(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): block i < nb of each row is in bounds (caller); KVALUES is 16
    // bytes.
    unsafe {
        let t = _mm_loadu_si128(KVALUES.as_ptr() as *const __m128i);
        let lut = _mm256_set_m128i(t, t);
        let mut acc = _mm256_setzero_ps();
        let mut acc_tiled = 0f32;
        for i in 0..nb {
            let bw = w.add(i * BYTES);
            let bx = x.add(i * X_BYTES);
            let dx = (bx as *const f32).read_unaligned();
            let lanes = block_lanes(bw, bx, lut);
            if TILED {
                let s = super::repack_q4_0::hsum_broadcast(lanes);
                let r = f16_at(bw) * _mm256_cvtsi256_si32(s) as f32;
                acc_tiled = dx.mul_add(r, acc_tiled);
            } else {
                let d = _mm256_set1_ps(f16_at(bw) * dx);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
            }
        }
        if TILED {
            acc_tiled
        } else {
            hsum_float_8(acc)
        }
    }
}

/// The tiled order for one weight row against four activation rows: the codes are looked
/// up once per group for all four, each token keeps its own exact integer sum and float
/// chain, so each result equals [`vec_dot_tiled_avx2`]'s bit for bit.
///
/// # Safety
/// AVX2, FMA and F16C must be present; `w` and each `x[t]` must hold `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_tiled_x4_avx2(nb: usize, w: *const u8, x: [*const u8; 4]) -> [f32; 4] {
    // SAFETY (whole body): every offset stays inside block i < nb of its row (caller);
    // KVALUES is 16 bytes; unaligned loads.
    unsafe {
        let t = _mm_loadu_si128(KVALUES.as_ptr() as *const __m128i);
        let lut = _mm256_set_m128i(t, t);
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = [0f32; 4];
        for i in 0..nb {
            let bw = w.add(i * BYTES);
            let scales = std::slice::from_raw_parts(bw, W_QS);
            let bx = x.map(|r| r.add(i * X_BYTES));
            let mut sum = [_mm256_setzero_si256(); 4];
            for g in 0..8 {
                let q = _mm_loadu_si128(bw.add(W_QS + 16 * g) as *const __m128i);
                let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
                let v = _mm256_shuffle_epi8(lut, codes);
                let av = _mm256_sign_epi8(v, v);
                let ls = _mm256_set1_epi16(group_scale(scales, g) as i16);
                for (s, &b) in sum.iter_mut().zip(&bx) {
                    let y = _mm256_loadu_si256(b.add(X_QS + 32 * g) as *const __m256i);
                    let p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, v));
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p16, ls));
                }
            }
            let dw = f16_at(bw);
            for ((a, s), b) in acc.iter_mut().zip(sum).zip(bx) {
                let total = super::repack_q4_0::hsum_broadcast(s);
                let r = dw * _mm256_cvtsi256_si32(total) as f32;
                *a = (b as *const f32).read_unaligned().mul_add(r, *a);
            }
        }
        acc
    }
}

/// Safe entry of [`dot_tiled_x4_avx2`].
pub(crate) fn vec_dot_tiled_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BYTES, x, X_BYTES);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // `blocks_x4` checked all five lengths.
    unsafe { dot_tiled_x4_avx2(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BYTES, x, X_BYTES);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // `blocks` checked the lengths.
    unsafe { dot_avx2::<false>(nb, w.as_ptr(), x.as_ptr()) }
}

/// The dot in the order of llama.cpp's tiled matmul (8 or more tokens).
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BYTES, x, X_BYTES);
    // SAFETY: as for `vec_dot_avx2`.
    unsafe { dot_avx2::<true>(nb, w.as_ptr(), x.as_ptr()) }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::IQ4_XS,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: None,
            w4: None,
            tile: None,
            gemv_tile: None,
        },
        avx512: LevelKernels {
            one: None,
            x4: None,
            w4: None,
            tile: None,
            gemv_tile: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::simd::*;
    use crate::GgmlType::IQ4_XS;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(IQ4_XS, Exact::Both);
    }

    /// The four-token tiled kernel gives each token exactly the one-token result.
    #[test]
    fn tiled_x4_equals_tiled_one() {
        if !crate::x86::has_avx2() {
            return;
        }
        let mut r = crate::testkit::simd::Rng::new(17);
        for nb in [1usize, 3, 8] {
            let n = nb * QK_K;
            let w: Vec<f32> = (0..n).map(|_| r.normal()).collect();
            let mut wq = vec![0u8; nb * BYTES];
            crate::iq4_xs::quantize(&w, &mut wq);
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|t| {
                    let v: Vec<f32> = (0..n).map(|_| r.normal() * (t + 1) as f32).collect();
                    let mut q = vec![0u8; nb * X_BYTES];
                    crate::q8_k::quantize(&v, &mut q);
                    q
                })
                .collect();
            let got = vec_dot_tiled_x4_avx2(n, &wq, [&xs[0], &xs[1], &xs[2], &xs[3]]);
            for (t, g) in got.iter().enumerate() {
                let want = vec_dot_tiled_avx2(n, &wq, &xs[t]);
                assert_eq!(g.to_bits(), want.to_bits(), "nb {nb} token {t}");
            }
        }
    }

    /// Whole matmuls hash to llama.cpp b11434's (scripts/quant-goldens:
    /// `matmul_hash iq4_xs K M N plain`): `vec_dot` below 8 tokens, the tiled order from
    /// 8 on.
    #[test]
    fn equals_llama_cpp_matmul() {
        if !crate::x86::has_avx2() {
            return;
        }
        for (k, m, n, want) in [
            (512, 32, 1, 0x9a62_ef0d_f552_e423u64),
            (512, 32, 3, 0x9a27_5a7d_eab9_b59d),
            (512, 32, 4, 0xefd9_5bf9_9f3d_e0cd),
            (512, 32, 7, 0x91c8_3091_e375_a975),
            (512, 32, 8, 0x8364_beef_7530_5c89),
            (512, 32, 22, 0x0422_66d2_5aeb_0210),
            // 2 threads in ggml; SmolLM2's FFN-down shape.
            (768, 48, 37, 0x7e29_03a0_f80d_ee40),
            (1536, 576, 9, 0xf61d_bd85_72e4_ef54),
        ] {
            let kernel: crate::dispatch::VecDotFn = if n >= 8 {
                vec_dot_tiled_avx2
            } else {
                vec_dot_avx2
            };
            let got =
                crate::testkit::matmul_hash(IQ4_XS, crate::iq4_xs::quantize, (k, m, n), &|_| {
                    kernel
                });
            assert_eq!(got, want, "{k} x {m} times {n} tokens");
            let scalar: crate::dispatch::VecDotFn = if n >= 8 {
                crate::iq4_xs::vec_dot_tiled
            } else {
                crate::iq4_xs::vec_dot
            };
            if n >= 8 {
                let got = crate::testkit::matmul_hash(
                    IQ4_XS,
                    crate::iq4_xs::quantize,
                    (k, m, n),
                    &|_| scalar,
                );
                assert_eq!(got, want, "scalar tiled order, {n} tokens");
            }
        }
    }
}

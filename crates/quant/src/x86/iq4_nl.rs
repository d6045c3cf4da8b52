//! IQ4_NL x Q8_0 in the order of ggml's AVX2 `ggml_vec_dot_iq4_nl_q8_0` (llama.cpp uses it
//! for IQ4_NL matrices it does not repack, i.e. row counts not a multiple of 8): blocks in
//! pairs, each block's products summed into 8 lanes of 4, converted to float and
//! fused-multiply-added with `d_x * d_w` into one of two lane accumulators (even and odd
//! blocks), which are added and reduced at the end; an odd last block is added by one scalar
//! fused multiply-add (GCC contracts that line). For 2 or more tokens llama.cpp runs such a
//! matrix through llamafile's sgemm instead, whose order differs only in keeping a single
//! lane accumulator for all blocks ([`vec_dot_sgemm_avx2`]).

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8, mul_sum_i8_avx2};
use crate::iq4_nl::{block_sum, BLOCK, BYTES, KVALUES};
use crate::q8_0::BYTES as X_BYTES;

/// # Safety
/// AVX2, FMA and F16C must be present; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const ONE_ACC: bool>(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): block i < nb of each row is in bounds (caller); KVALUES is 16
    // bytes; all loads are unaligned ones.
    unsafe {
        let t = _mm_loadu_si128(KVALUES.as_ptr() as *const __m128i);
        let lut = _mm256_set_m128i(t, t);
        let m4 = _mm256_set1_epi8(0x0f);
        let values = |p: *const u8| {
            let q = _mm_loadu_si128(p as *const __m128i);
            let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            _mm256_shuffle_epi8(lut, codes)
        };
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        if ONE_ACC {
            for i in 0..nb {
                let bw = w.add(i * BYTES);
                let bx = x.add(i * X_BYTES);
                let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                let d = _mm256_set1_ps(f16_at(bw) * f16_at(bx));
                acc[0] = _mm256_fmadd_ps(d, mul_sum_i8_avx2(values(bw.add(2)), qy), acc[0]);
            }
            return hsum_float_8(acc[0]);
        }
        while i + 1 < nb {
            for (k, acc) in acc.iter_mut().enumerate() {
                let bw = w.add((i + k) * BYTES);
                let bx = x.add((i + k) * X_BYTES);
                let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                let d = _mm256_set1_ps(f16_at(bx) * f16_at(bw));
                *acc = _mm256_fmadd_ps(d, mul_sum_i8_avx2(values(bw.add(2)), qy), *acc);
            }
            i += 2;
        }
        let mut sumf = hsum_float_8(_mm256_add_ps(acc[0], acc[1]));
        if i < nb {
            let bw = std::slice::from_raw_parts(w.add(i * BYTES), BYTES);
            let bx = std::slice::from_raw_parts(x.add(i * X_BYTES), X_BYTES);
            let d = f16_at(bx.as_ptr()) * f16_at(bw.as_ptr());
            let (lo, hi) = block_sum(&bw[2..], &bx[2..]);
            sumf = d.mul_add((lo + hi) as f32, sumf);
        }
        sumf
    }
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, BLOCK, w, BYTES, x, X_BYTES);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // `blocks` checked the lengths.
    unsafe { dot_avx2::<false>(nb, w.as_ptr(), x.as_ptr()) }
}

/// The dot in the order of llamafile's sgemm (`tinyBLAS_Q0_AVX`), which llama.cpp uses for
/// unrepacked IQ4_NL matrices times 2 or more tokens: one lane accumulator over all blocks.
pub(crate) fn vec_dot_sgemm_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, BLOCK, w, BYTES, x, X_BYTES);
    // SAFETY: as for `vec_dot_avx2`.
    unsafe { dot_avx2::<true>(nb, w.as_ptr(), x.as_ptr()) }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::IQ4_NL,
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
    use crate::testkit::simd::*;
    use crate::GgmlType::IQ4_NL;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(IQ4_NL, Exact::Both);
    }

    /// A whole matmul of a matrix llama.cpp does not repack (31 rows, 17 blocks so the odd
    /// one is covered) hashes to what its `vec_dot` gave (scripts/quant-goldens:
    /// `matmul_hash iq4_nl 544 31 N plain`): `vec_dot` for one token, sgemm for three.
    #[test]
    fn equals_llama_cpp_unrepacked_matmul() {
        if !crate::x86::has_avx2() {
            return;
        }
        for (n, want) in [(1, 0xe6b0_53d9_f4e6_6182u64), (3, 0xfd71_6947_2199_12f6)] {
            let got =
                crate::testkit::matmul_hash(IQ4_NL, crate::iq4_nl::quantize, (544, 31, n), &|_| {
                    if n >= 2 {
                        super::vec_dot_sgemm_avx2
                    } else {
                        super::vec_dot_avx2
                    }
                });
            assert_eq!(got, want, "{n} tokens");
        }
    }
}

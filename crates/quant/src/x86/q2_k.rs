//! Q2_K x Q8_K on AVX2.
//!
//! ggml folds the mins into the same 8 f32 lanes as the quants: per block first one FMA of
//! `-d_y * dmin` times (min x bsum, summed over pairs of 16-groups), then one FMA of
//! `d_y * d` times the 8 exact i32 lanes (lane `m` = bytes `4m..4m+4` of every 32-byte chunk,
//! scaled per 16-value group). Repeating those two FMAs in order gives ggml's bits.

use std::arch::x86_64::*;

use super::q4_k::{pick16, Y_BSUMS, Y_QS};
use super::q6_k::hsum_i32;
use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q2_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

const W_QS: usize = 16;
const W_D: usize = 80;
const W_DMIN: usize = 82;

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx2::<VEC_DOT>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: the dot in the order of llama.cpp's tiled K-quant matmul (8 or more tokens,
/// weights not repacked): per block `r = S * d_w - dmin_w * M`, then `acc += r * d_y`.
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<TILED>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: llama.cpp's repacked `gemv` order. Its AVX-512 build repacks Q2_K matrices
/// with a multiple of 8 rows (`q2_K_8x8_q8_K`): two f32 chains (scales, mins) fed with one
/// FMA of exact block integers times `d_w * d_y` (`dmin_w * d_y`) each, then subtracted.
pub(crate) fn vec_dot_repack_gemv_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<GEMV>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: llama.cpp's repacked `gemm` order (tokens in groups of 4): as the `gemv` one
/// with one FMA per 128-value half instead of per block.
pub(crate) fn vec_dot_repack_gemm_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<GEMM>(nb, w.as_ptr(), x.as_ptr()) }
}

/// [`vec_dot_repack_gemm_avx2`] for four tokens (four plain calls: no faster kernel yet).
pub(crate) fn vec_dot_repack_gemm_x4(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    x.map(|x| vec_dot_repack_gemm_avx2(n, w, x))
}

/// Float orders of [`dot_avx2`]; the integers are the same in all.
const VEC_DOT: u8 = 0;
const TILED: u8 = 1;
const GEMV: u8 = 2;
const GEMM: u8 = 3;

/// # Safety
/// AVX2, FMA and F16C must be available; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2<const MODE: u8>(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m4 = _mm_set1_epi8(0x0f);
        let mut acc = _mm256_setzero_ps();
        let mut tiled = 0f32;
        let (mut rep, mut rep_m) = (0f32, 0f32);
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.add(i * Q8K_BYTES);
            let yd = (yb as *const f32).read_unaligned();
            let d = yd * f16_at(wb.add(W_D));
            let dmin = -yd * f16_at(wb.add(W_DMIN));
            let packed = _mm_loadu_si128(wb as *const __m128i);
            let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
            let bsums = _mm256_loadu_si256(yb.add(Y_BSUMS) as *const __m256i);
            let prod = _mm256_madd_epi16(mins, bsums);
            if MODE == VEC_DOT {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
            }

            let all = _mm256_cvtepi8_epi16(_mm_and_si128(packed, m4));
            let halves = [
                _mm256_permute2x128_si256(all, all, 0x00),
                _mm256_permute2x128_si256(all, all, 0x11),
            ];
            let mut sumi = _mm256_setzero_si256();
            let mut half = [0i32; 2];
            for (j, scales) in halves.iter().enumerate() {
                let q2 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                let mut p = [_mm256_setzero_si256(); 4];
                for (k, p) in p.iter_mut().enumerate() {
                    let q =
                        _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * k as i32)), m3);
                    let y = _mm256_loadu_si256(yb.add(Y_QS + 128 * j + 32 * k) as *const __m256i);
                    // Bytes 0..16 of the chunk use scale 2k of this half, 16..32 scale 2k+1.
                    let ctl = _mm256_set_m128i(
                        _mm_set1_epi16(pick16(2 * k as i32 + 1)),
                        _mm_set1_epi16(pick16(2 * k as i32)),
                    );
                    *p = _mm256_madd_epi16(
                        _mm256_shuffle_epi8(*scales, ctl),
                        _mm256_maddubs_epi16(q, y),
                    );
                }
                let s =
                    _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
                sumi = _mm256_add_epi32(sumi, s);
                half[j] = hsum_i32(s);
            }
            if MODE == GEMV || MODE == GEMM {
                let dd = f16_at(wb.add(W_D)) * yd;
                let dm = f16_at(wb.add(W_DMIN)) * yd;
                // Lanes 0..4 of `prod` are the mins of sub-blocks 0..8 (the first half).
                let pm: [i32; 8] = std::mem::transmute(prod);
                let half_m = [pm[..4].iter(), pm[4..].iter()]
                    .map(|l| l.fold(0i32, |a, &b| a.wrapping_add(b)));
                if MODE == GEMM {
                    for h in 0..2 {
                        rep = (half[h] as f32).mul_add(dd, rep);
                        rep_m = (half_m[h] as f32).mul_add(dm, rep_m);
                    }
                } else {
                    let ib = half[0].wrapping_add(half[1]);
                    rep = (ib as f32).mul_add(dd, rep);
                    rep_m = (half_m[0].wrapping_add(half_m[1]) as f32).mul_add(dm, rep_m);
                }
            } else if MODE == TILED {
                let s = hsum_i32(sumi) as f32 * f16_at(wb.add(W_D));
                let r = (-f16_at(wb.add(W_DMIN))).mul_add(hsum_i32(prod) as f32, s);
                tiled = r.mul_add(yd, tiled);
            } else {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
        }
        match MODE {
            TILED => tiled,
            GEMV | GEMM => rep - rep_m,
            _ => hsum_float_8(acc),
        }
    }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q2_K,
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
    use crate::testkit::kquant as ktest;

    fn levels() -> Vec<(&'static str, ktest::Kernel)> {
        let mut v: Vec<(&'static str, ktest::Kernel)> = Vec::new();
        if ktest::has_avx2() {
            v.push(("avx2", vec_dot_avx2));
        }
        v
    }

    #[test]
    fn equals_ggml_x86_kernel_on_fixture() {
        for (name, k) in levels() {
            ktest::check_fixture_bit_exact("Q2_K", name, k);
        }
    }

    #[test]
    fn close_to_scalar() {
        ktest::check_against_scalar(&ktest::Q2K, crate::q2_k::vec_dot, &levels());
    }
    /// Whole llama.cpp matmuls: 6 tokens go through `vec_dot`, 22 and 37 through the tiled
    /// K-quant matmul (hashes from the generator described at `ktest::check_matmul_hash`).
    #[test]
    fn matmuls_equal_llama_cpp_vec_dot_and_tiled_paths() {
        if !ktest::has_avx2() {
            return;
        }
        let (f, q) = (&ktest::Q2K, crate::q2_k::quantize);
        ktest::check_against_scalar(f, crate::q2_k::vec_dot, &[("tiled", vec_dot_tiled_avx2)]);
        ktest::check_matmul_hash(f, q, (512, 32, 6), &|_| vec_dot_avx2, 0x01b5_6ad9_6251_56db);
        ktest::check_matmul_hash(
            f,
            q,
            (512, 32, 22),
            &|_| vec_dot_tiled_avx2,
            0x0380_29c3_d80d_6cdd,
        );
        ktest::check_matmul_hash(
            f,
            q,
            (768, 48, 37),
            &|_| vec_dot_tiled_avx2,
            0xa5db_36d5_17f5_f332,
        );
    }
    /// llama.cpp's AVX-512 build repacks Q2_K (log: "repack tensor with q2_K_8x8"): tokens
    /// in groups of 4 go through `gemm`, the rest through `gemv` (hashes as above).
    #[test]
    fn repacked_matmuls_equal_llama_cpp() {
        if !ktest::has_avx2() {
            return;
        }
        let (f, q) = (&ktest::Q2K, crate::q2_k::quantize);
        ktest::check_against_scalar(
            f,
            crate::q2_k::vec_dot,
            &[("gemv", vec_dot_repack_gemv_avx2)],
        );
        ktest::check_against_scalar(
            f,
            crate::q2_k::vec_dot,
            &[("gemm", vec_dot_repack_gemm_avx2)],
        );
        for (k, m, n, want) in [
            (1024, 8, 6, 0xf870_0d9b_5f8d_e99du64),
            (512, 32, 22, 0xbec5_9f50_45ba_50bb),
            (768, 48, 37, 0x7e2e_95d7_2b36_b16b),
        ] {
            let order = |t: usize| -> ktest::Kernel {
                if t < n - n % 4 {
                    vec_dot_repack_gemm_avx2
                } else {
                    vec_dot_repack_gemv_avx2
                }
            };
            ktest::check_matmul_hash(f, q, (k, m, n), &order, want);
        }
    }
}

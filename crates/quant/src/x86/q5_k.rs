//! Q5_K x Q8_K on AVX2.
//!
//! Same shape as Q4_K (8 exact i32 lanes per block, one FMA per block into 8 f32 lanes), but
//! ggml sums the mins of each block to one integer and folds it into a scalar with
//! `summs += dmin * (float)sum`, which GCC contracts to a single FMA in the build that made
//! the fixtures (checked in its disassembly); the scalar is added after the lane reduction.

use std::arch::x86_64::*;

use super::q4_k::{mins_prod, pick16, scales_mins_k4, Y_BSUMS, Y_QS};
use super::q6_k::hsum_i32;
use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q5_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

const W_SCALES: usize = 4;
const W_QH: usize = 16;
const W_QS: usize = 48;

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx2::<1, false>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// Safe entry for the dispatch table: one weight row against four activation rows, each
/// result bit-identical to [`vec_dot_avx2`]'s.
pub(crate) fn vec_dot_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks_x4` checked all five buffers.
    unsafe { dot_avx2::<4, false>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// Safe entry: the dot in the order of llama.cpp's tiled K-quant matmul (8 or more tokens,
/// weights not repacked): per block `r = S * d_w - dmin_w * M`, then `acc += r * d_y`.
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<1, true>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// [`vec_dot_tiled_avx2`] for four activation rows, bit-identical per row.
pub(crate) fn vec_dot_tiled_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks_x4` checked all five buffers.
    unsafe { dot_avx2::<4, true>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// `R` activation rows against one weight row: the 5-bit quants and scales are unpacked once
/// per block and every row keeps its own accumulators, so each result is a one-row call's.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` and every `x[r]` must hold `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2<const R: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    x: [*const u8; R],
) -> [f32; R] {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let one = _mm256_set1_epi8(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut tiled = [0f32; R];
        let mut summs = [0f32; R];
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let (dw, dminw) = (f16_at(wb), f16_at(wb.add(2)));
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(wb.add(W_SCALES)));
            let mins16 = _mm256_extracti128_si256(sm, 1);
            let sc = _mm256_castsi256_si128(sm);
            let scales = _mm256_set_m128i(sc, sc);
            let hbits = _mm256_loadu_si256(wb.add(W_QH) as *const __m256i);
            // Bit 2j (resp. 2j+1) of each qh byte is the 5th bit of sub-block 2j (2j+1).
            let hi = |b: usize| {
                let h = _mm256_srl_epi16(hbits, _mm_cvtsi32_si128(b as i32));
                _mm256_slli_epi16(_mm256_and_si256(h, one), 4)
            };
            let mut q = [_mm256_setzero_si256(); 8];
            let mut s = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let q5 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                q[2 * j] = _mm256_or_si256(_mm256_and_si256(q5, m4), hi(2 * j));
                q[2 * j + 1] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q5, 4), m4),
                    hi(2 * j + 1),
                );
                for h in 0..2 {
                    let ctl = _mm256_set1_epi16(pick16((2 * j + h) as i32));
                    s[2 * j + h] = _mm256_shuffle_epi8(scales, ctl);
                }
            }
            for r in 0..R {
                let yb = x[r].add(i * Q8K_BYTES);
                let yd = (yb as *const f32).read_unaligned();
                let prod = mins_prod(mins16, yb.add(Y_BSUMS));
                let lanes: [i32; 4] = std::mem::transmute(prod);
                let msum = lanes.iter().fold(0i32, |a, &b| a.wrapping_add(b));
                let mut sumi = _mm256_setzero_si256();
                for j in 0..4 {
                    let y = yb.add(Y_QS + 64 * j);
                    let yl = _mm256_loadu_si256(y as *const __m256i);
                    let yh = _mm256_loadu_si256(y.add(32) as *const __m256i);
                    let pl = _mm256_madd_epi16(s[2 * j], _mm256_maddubs_epi16(q[2 * j], yl));
                    let ph =
                        _mm256_madd_epi16(s[2 * j + 1], _mm256_maddubs_epi16(q[2 * j + 1], yh));
                    sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
                }
                if TILED {
                    let t = (-dminw).mul_add(msum as f32, hsum_i32(sumi) as f32 * dw);
                    tiled[r] = t.mul_add(yd, tiled[r]);
                } else {
                    let d = yd * dw;
                    let dmin = -yd * dminw;
                    summs[r] = dmin.mul_add(msum as f32, summs[r]);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
                }
            }
        }
        if TILED {
            return tiled;
        }
        std::array::from_fn(|r| hsum_float_8(acc[r]) + summs[r])
    }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q5_K,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: Some(vec_dot_x4_avx2),
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
            ktest::check_fixture_bit_exact("Q5_K", name, k);
        }
    }

    #[test]
    fn four_row_kernels_equal_one_row_kernels_bitwise() {
        if ktest::has_avx2() {
            ktest::check_x4(&ktest::Q5K, vec_dot_avx2, vec_dot_x4_avx2);
            ktest::check_x4(&ktest::Q5K, vec_dot_tiled_avx2, vec_dot_tiled_x4_avx2);
        }
    }

    #[test]
    fn close_to_scalar() {
        ktest::check_against_scalar(&ktest::Q5K, crate::q5_k::vec_dot, &levels());
    }
    /// Whole llama.cpp matmuls: 6 tokens go through `vec_dot`, 22 and 37 through the tiled
    /// K-quant matmul (hashes from the generator described at `ktest::check_matmul_hash`).
    #[test]
    fn matmuls_equal_llama_cpp_vec_dot_and_tiled_paths() {
        if !ktest::has_avx2() {
            return;
        }
        let (f, q) = (&ktest::Q5K, crate::q5_k::quantize);
        ktest::check_against_scalar(f, crate::q5_k::vec_dot, &[("tiled", vec_dot_tiled_avx2)]);
        ktest::check_matmul_hash(f, q, (512, 32, 6), &|_| vec_dot_avx2, 0xab61_a5db_7bc8_27ef);
        ktest::check_matmul_hash(
            f,
            q,
            (512, 32, 22),
            &|_| vec_dot_tiled_avx2,
            0x0cdf_df6d_4d1e_9b61,
        );
        ktest::check_matmul_hash(
            f,
            q,
            (768, 48, 37),
            &|_| vec_dot_tiled_avx2,
            0x85f7_d7ac_454e_73a0,
        );
    }
}

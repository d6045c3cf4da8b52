//! Q3_K x Q8_K on AVX2.
//!
//! ggml forms each product as (low 2 bits) x q8 minus (4 where the high bit is clear) x q8,
//! both through `maddubs`, then scales 16-value groups; lane `m` of the 8 exact i32 lanes
//! collects bytes `4m..4m+4` of every 32-byte chunk, and the block enters the 8 f32 lanes with
//! one FMA. The same integers give ggml's float result bit for bit.

use std::arch::x86_64::*;

use super::q4_k::Y_QS;
use super::q6_k::hsum_i32;
use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q3_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

const W_QS: usize = 32;
const W_SCALES: usize = 96;
const W_D: usize = 108;

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx2::<false>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: the dot in the order of llama.cpp's tiled K-quant matmul (8 or more tokens,
/// weights not repacked): per block `r = S * d_w`, then `acc += r * d_y`.
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<true>(nb, w.as_ptr(), x.as_ptr()) }
}

/// The 16 six-bit scales of a block at `p` (12 bytes), minus their +32 offset, as i8.
///
/// # Safety
/// `p` must be readable for 12 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scales_q3(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes; unaligned reads.
    let (a0, a1, a2) = unsafe {
        let p = p as *const u32;
        (
            p.read_unaligned(),
            p.add(1).read_unaligned(),
            p.add(2).read_unaligned(),
        )
    };
    // Scales 0..8 take the low nibbles of bytes 0..8, scales 8..16 the high ones; the top 2
    // bits of scale j sit in byte 8 + j % 4 at bit pair j / 4.
    const LO: u32 = 0x0f0f_0f0f;
    let top = |pair: u32| ((a2 >> (2 * pair)) & 0x0303_0303) << 4;
    let v = _mm_set_epi32(
        (((a1 >> 4) & LO) | top(3)) as i32,
        (((a0 >> 4) & LO) | top(2)) as i32,
        ((a1 & LO) | top(1)) as i32,
        ((a0 & LO) | top(0)) as i32,
    );
    _mm_sub_epi8(v, _mm_set1_epi8(32))
}

/// # Safety
/// AVX2, FMA and F16C must be available; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2<const TILED: bool>(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut acc = _mm256_setzero_ps();
        let mut tiled = 0f32;
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.add(i * Q8K_BYTES);
            let yd = (yb as *const f32).read_unaligned();
            let dw = f16_at(wb.add(W_D));
            let d = yd * dw;
            let all = _mm256_cvtepi8_epi16(scales_q3(wb.add(W_SCALES)));
            let halves = [
                _mm256_permute2x128_si256(all, all, 0x00),
                _mm256_permute2x128_si256(all, all, 0x11),
            ];
            // The high bits are stored inverted relative to the -4 they stand for.
            let hbits = _mm256_loadu_si256(wb as *const __m256i);
            let mut sumi = _mm256_setzero_si256();
            for (j, scales) in halves.iter().enumerate() {
                let q3 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                let mut p = [_mm256_setzero_si256(); 4];
                for (k, p) in p.iter_mut().enumerate() {
                    let bit = _mm_cvtsi32_si128((4 * j + k) as i32);
                    let shift = _mm_cvtsi32_si128(2 * k as i32);
                    let lo = _mm256_and_si256(_mm256_srl_epi16(q3, shift), m3);
                    let set = _mm256_and_si256(_mm256_srl_epi16(hbits, bit), _mm256_set1_epi8(1));
                    let minus4 = _mm256_slli_epi16(_mm256_xor_si256(set, _mm256_set1_epi8(1)), 2);
                    let y = _mm256_loadu_si256(yb.add(Y_QS + 128 * j + 32 * k) as *const __m256i);
                    let p16 = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(lo, y),
                        _mm256_maddubs_epi16(minus4, y),
                    );
                    // Bytes 0..16 of the chunk use scale 2k of this half, 16..32 scale 2k+1.
                    let ctl = _mm256_set_m128i(
                        _mm_set1_epi16(super::q4_k::pick16(2 * k as i32 + 1)),
                        _mm_set1_epi16(super::q4_k::pick16(2 * k as i32)),
                    );
                    *p = _mm256_madd_epi16(_mm256_shuffle_epi8(*scales, ctl), p16);
                }
                let s =
                    _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
                sumi = _mm256_add_epi32(sumi, s);
            }
            if TILED {
                tiled = (hsum_i32(sumi) as f32 * dw).mul_add(yd, tiled);
            } else {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
        }
        if TILED {
            return tiled;
        }
        hsum_float_8(acc)
    }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q3_K,
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
            ktest::check_fixture_bit_exact("Q3_K", name, k);
        }
    }

    #[test]
    fn close_to_scalar() {
        ktest::check_against_scalar(&ktest::Q3K, crate::q3_k::vec_dot, &levels());
    }
    /// Whole llama.cpp matmuls: 6 tokens go through `vec_dot`, 22 and 37 through the tiled
    /// K-quant matmul (hashes from the generator described at `ktest::check_matmul_hash`).
    #[test]
    fn matmuls_equal_llama_cpp_vec_dot_and_tiled_paths() {
        if !ktest::has_avx2() {
            return;
        }
        let (f, q) = (&ktest::Q3K, crate::q3_k::quantize);
        ktest::check_against_scalar(f, crate::q3_k::vec_dot, &[("tiled", vec_dot_tiled_avx2)]);
        ktest::check_matmul_hash(f, q, (512, 32, 6), &|_| vec_dot_avx2, 0x4644_b38f_ade3_4e1c);
        ktest::check_matmul_hash(
            f,
            q,
            (512, 32, 22),
            &|_| vec_dot_tiled_avx2,
            0xf59d_1509_19a8_cd1e,
        );
        ktest::check_matmul_hash(
            f,
            q,
            (768, 48, 37),
            &|_| vec_dot_tiled_avx2,
            0xf4fa_1d6c_6d6b_b6ae,
        );
    }
}

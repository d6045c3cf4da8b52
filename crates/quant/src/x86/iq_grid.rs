//! The IQ lattice formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) x Q8_K with AVX2, one
//! generic kernel for all five (see [`crate::iq_grid`] for the two llama.cpp orders). Per
//! sub-block of 32: the four grid groups and their sign bytes are looked up as ggml's AVX2
//! code does, the Q8_K values get the signs (`_mm256_sign_epi8`), `maddubs` multiplies them by
//! the unsigned grid values, and `madd` by the halves' scales gives 8 exact i32 lanes, lane k
//! holding elements 4k..4k+4. Values are at most 62 and |q8| at most 127, so no i16 sum
//! saturates and every integer is exact; what follows is the order's float math.

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8};
use crate::iq_grid::{Lattice, SIGN_BYTES};
use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES as X_BYTES;

const X_QS: usize = 4;

/// The 8 lanes of exact integer sums of one super-block.
///
/// # Safety
/// AVX2 must be present; `bx` must point at one Q8_K block.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_lanes<L: Lattice>(bw: &[u8], bx: *const u8) -> __m256i {
    // SAFETY (whole body): the 8 loads of 32 bytes stay inside the Q8_K block's 256 quants.
    unsafe {
        let mut sum = _mm256_setzero_si256();
        for ib in 0..8 {
            let s = L::sub(bw, ib);
            let g = s.grid.map(|g| g as i64);
            let q = _mm256_set_epi64x(g[3], g[2], g[1], g[0]);
            let sg = s.signs.map(|b| SIGN_BYTES[b as usize] as i64);
            let signs = _mm256_set_epi64x(sg[3], sg[2], sg[1], sg[0]);
            let y = _mm256_loadu_si256(bx.add(X_QS + 32 * ib) as *const __m256i);
            let p16 = _mm256_maddubs_epi16(q, _mm256_sign_epi8(y, signs));
            // i16 lanes 0..8 hold elements 0..16 (first half), 8..16 the second half.
            let ls = _mm256_set_m128i(
                _mm_set1_epi16(s.ls[1] as i16),
                _mm_set1_epi16(s.ls[0] as i16),
            );
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p16, ls));
        }
        sum
    }
}

/// # Safety
/// AVX2, FMA and F16C must be present; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<L: Lattice, const TILED: bool>(nb: usize, w: &[u8], x: *const u8) -> f32 {
    // SAFETY (whole body): block i < nb of each row is in bounds (caller).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_tiled = 0f32;
        for i in 0..nb {
            let bw = &w[i * L::BYTES..(i + 1) * L::BYTES];
            let bx = x.add(i * X_BYTES);
            let dx = (bx as *const f32).read_unaligned();
            let lanes = block_lanes::<L>(bw, bx);
            if TILED {
                let s = super::repack_q4_0::hsum_broadcast(lanes);
                let r = (f16_at(bw.as_ptr()) * L::FACTOR) * _mm256_cvtsi256_si32(s) as f32;
                acc_tiled = dx.mul_add(r, acc_tiled);
            } else {
                let d = _mm256_set1_ps(f16_at(bw.as_ptr()) * dx);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
            }
        }
        if TILED {
            acc_tiled
        } else {
            L::FACTOR * hsum_float_8(acc)
        }
    }
}

/// ggml's AVX2 `ggml_vec_dot_iq*_q8_K` order.
pub(crate) fn vec_dot_avx2<L: Lattice>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, L::BYTES, x, X_BYTES);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // `blocks` checked the lengths.
    unsafe { dot_avx2::<L, false>(nb, w, x.as_ptr()) }
}

/// The order of llama.cpp's tiled matmul (8 or more tokens).
pub(crate) fn vec_dot_tiled_avx2<L: Lattice>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, L::BYTES, x, X_BYTES);
    // SAFETY: as for `vec_dot_avx2`.
    unsafe { dot_avx2::<L, true>(nb, w, x.as_ptr()) }
}

/// The kernels of lattice format `L` (type `ty`); ggml's x86 build runs the same AVX2 code
/// on AVX-512 machines.
pub(crate) fn kernels<L: Lattice>(ty: crate::GgmlType) -> super::SimdKernels {
    use super::LevelKernels;
    super::SimdKernels {
        ty,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2::<L>),
            ..LevelKernels::NONE
        },
        avx512: LevelKernels::NONE,
    }
}

/// IQ1_S and IQ1_M at the AVX2 level: the scalar code of ggml's AVX2 order
/// ([`crate::iq1::vec_dot_lanes`]) until they get SIMD kernels of their own; the level only
/// decides the order, which must be the x86 build's.
pub(crate) fn iq1_kernels<T: crate::iq1::Ternary>(ty: crate::GgmlType) -> super::SimdKernels {
    use super::LevelKernels;
    super::SimdKernels {
        ty,
        avx2: LevelKernels {
            one: Some(crate::iq1::vec_dot_lanes::<T>),
            ..LevelKernels::NONE
        },
        avx512: LevelKernels::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iq2_s::Iq2S;
    use crate::iq2_xs::Iq2Xs;
    use crate::iq2_xxs::Iq2Xxs;
    use crate::iq3_s::Iq3S;
    use crate::iq3_xxs::Iq3Xxs;

    /// Random blocks of every lattice format (any bytes are a valid block; the f16 scale is
    /// kept finite) against scalar activations: the kernels equal the scalar orders bit for
    /// bit, for 1 to 9 super-blocks.
    fn check<L: Lattice>() {
        if !super::super::has_avx2() {
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for nb in 1..=9 {
            let mut w = vec![0u8; nb * L::BYTES];
            w.iter_mut().for_each(|b| *b = next() as u8);
            for b in w.chunks_exact_mut(L::BYTES) {
                let d = 0x1000 | (next() & 0x0fff) as u16;
                b[..2].copy_from_slice(&d.to_le_bytes());
            }
            let xf: Vec<f32> = (0..nb * QK_K)
                .map(|_| (next() >> 40) as f32 / 8388608.0 - 1.0)
                .collect();
            let mut x = vec![0u8; nb * X_BYTES];
            crate::q8_k::quantize(&xf, &mut x);
            let n = nb * QK_K;
            assert_eq!(
                vec_dot_avx2::<L>(n, &w, &x).to_bits(),
                crate::iq_grid::vec_dot_lanes::<L>(n, &w, &x).to_bits(),
                "nb {nb}"
            );
            assert_eq!(
                vec_dot_tiled_avx2::<L>(n, &w, &x).to_bits(),
                crate::iq_grid::vec_dot_tiled::<L>(n, &w, &x).to_bits(),
                "nb {nb} tiled"
            );
        }
    }

    #[test]
    fn kernels_equal_the_scalar_orders() {
        check::<Iq2Xxs>();
        check::<Iq2Xs>();
        check::<Iq2S>();
        check::<Iq3Xxs>();
        check::<Iq3S>();
    }
}

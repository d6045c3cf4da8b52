//! Q5_1 x Q8_1 in the order of ggml's AVX2 `ggml_vec_dot_q5_1_q8_1`: per block, the 5-bit
//! values (nibble plus 16 where the high bit is set) times the activation bytes summed into
//! 8 lanes of 4, converted to float and fused-multiply-added with `d_w * d_x` into 8 lane
//! accumulators; the offsets `m_w * s_x` summed separately in f32 (an FMA once GCC
//! contracts it); lanes reduced and offsets added at the end.

use std::arch::x86_64::*;

use super::{
    blocks, blocks_w4, blocks_x4, bytes_from_bits_32, bytes_from_nibbles_32, f16_pair,
    hsum_float_8, mul_sum_us8_avx2, mul_sum_us8_vnni,
};
use crate::q5_1::{BLOCK, BYTES};
use crate::q8_1::BYTES as X_BYTES;

macro_rules! kernel {
    ($name:ident, $features:literal, $mul_sum:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the `RW` weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Every pair gets its own accumulators,
        /// so each result is the same whatever `RW` and `R` (several rows only share loads
        /// and unpacking, and overlap their dependency chains).
        #[target_feature(enable = $features)]
        unsafe fn $name<const RW: usize, const R: usize>(
            nb: usize,
            w: [*const u8; RW],
            x: [*const u8; R],
        ) -> [[f32; R]; RW] {
            let mut acc = [[_mm256_setzero_ps(); R]; RW];
            let mut summs = [[0.0f32; R]; RW];
            for i in 0..nb {
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    for ((acc, summs), wr) in acc.iter_mut().zip(summs.iter_mut()).zip(w) {
                        let bw = wr.add(i * BYTES);
                        let dm = f16_pair(bw);
                        let (dw, m) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
                        let qx = _mm256_or_si256(
                            bytes_from_nibbles_32(bw.add(8)),
                            _mm256_and_si256(bytes_from_bits_32(bw.add(4)), _mm256_set1_epi8(0x10)),
                        );
                        for ((acc, summs), xr) in acc.iter_mut().zip(summs.iter_mut()).zip(x) {
                            let bx = xr.add(i * X_BYTES);
                            let ds = f16_pair(bx);
                            *summs = m.mul_add(_mm_cvtss_f32(_mm_movehdup_ps(ds)), *summs);
                            let d = _mm256_set1_ps(dw * _mm_cvtss_f32(ds));
                            let qy = _mm256_loadu_si256(bx.add(4) as *const __m256i);
                            *acc = _mm256_fmadd_ps($mul_sum(qx, qy), d, *acc);
                        }
                    }
                }
            }
            let mut out = [[0.0f32; R]; RW];
            for ((ow, aw), sw) in out.iter_mut().zip(acc).zip(summs) {
                for ((o, a), s) in ow.iter_mut().zip(aw).zip(sw) {
                    *o = hsum_float_8(a) + s;
                }
            }
            out
        }
    };
}

kernel!(dot_avx2, "avx2,fma,f16c", mul_sum_us8_avx2);
kernel!(
    dot_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    mul_sum_us8_vnni
);

block_entry_points!(X_BYTES);

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q5_1,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: Some(vec_dot_x4_avx2),
            w4: Some(vec_dot_w4_avx2),
            tile: Some(Tile {
                rows: 4,
                toks: 1,
                f: tile_avx2,
                x_f32: false,
                pack: None,
                prefetches: false,
            }),
            gemv_tile: None,
        },
        avx512: LevelKernels {
            one: Some(vec_dot_avx512),
            x4: Some(vec_dot_x4_avx512),
            w4: Some(vec_dot_w4_avx512),
            tile: Some(Tile {
                rows: 4,
                toks: super::tile_pairs::TOKS,
                f: super::tile_pairs::tile_q5_1,
                x_f32: false,
                pack: None,
                prefetches: false,
            }),
            gemv_tile: Some(Tile {
                rows: 4,
                toks: 4,
                f: tile_avx512,
                x_f32: false,
                pack: None,
                prefetches: false,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::Q5_1;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(Q5_1, Exact::Both);
    }

    #[test]
    fn four_row_kernel_equals_single_row_kernel() {
        check_x4(Q5_1);
    }

    #[test]
    fn four_weight_row_kernel_equals_single_row_kernel() {
        check_w4(Q5_1);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(Q5_1);
    }
}

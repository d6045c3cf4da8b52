//! Q8_0 x Q8_0 in the order of ggml's AVX2 `ggml_vec_dot_q8_0_q8_0`: per block, the 32
//! byte products (through ggml's sign trick) summed into 8 lanes of 4, converted to float
//! and fused-multiply-added with `d_w * d_x` into 8 lane accumulators, reduced at the end.

use std::arch::x86_64::*;

use super::{blocks, blocks_w4, blocks_x4, f16_at, hsum_float_8, mul_sum_i8_avx2, mul_sum_i8_vnni};
use crate::q8_0::{BLOCK, BYTES};

macro_rules! kernel {
    ($name:ident, $features:literal, $mul_sum:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the `RW` weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Every pair gets its own accumulator,
        /// so each result is the same whatever `RW` and `R` (several rows only share loads
        /// and unpacking, and overlap their dependency chains).
        #[target_feature(enable = $features)]
        unsafe fn $name<const RW: usize, const R: usize>(
            nb: usize,
            w: [*const u8; RW],
            x: [*const u8; R],
        ) -> [[f32; R]; RW] {
            let mut acc = [[_mm256_setzero_ps(); R]; RW];
            for i in 0..nb {
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    for (acc, wr) in acc.iter_mut().zip(w) {
                        let bw = wr.add(i * BYTES);
                        let dw = f16_at(bw);
                        let qx = _mm256_loadu_si256(bw.add(2) as *const __m256i);
                        for (acc, xr) in acc.iter_mut().zip(x) {
                            let bx = xr.add(i * BYTES);
                            let d = _mm256_set1_ps(dw * f16_at(bx));
                            let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                            *acc = _mm256_fmadd_ps(d, $mul_sum(qx, qy), *acc);
                        }
                    }
                }
            }
            let mut out = [[0.0f32; R]; RW];
            for (ow, aw) in out.iter_mut().zip(acc) {
                for (o, a) in ow.iter_mut().zip(aw) {
                    *o = hsum_float_8(a);
                }
            }
            out
        }
    };
}

kernel!(dot_avx2, "avx2,fma,f16c", mul_sum_i8_avx2);
kernel!(
    dot_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    mul_sum_i8_vnni
);

block_entry_points!(BYTES);

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q8_0,
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
                f: super::tile_pairs::tile_q8_0,
                x_f32: false,
                pack: None,
                prefetches: false,
            }),
            gemv_tile: Some(Tile {
                rows: super::gemv_q8_0::ROWS,
                toks: 1,
                f: super::gemv_q8_0::tile_avx512,
                x_f32: false,
                pack: None,
                prefetches: true,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::Q8_0;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(Q8_0, Exact::Both);
    }

    #[test]
    fn four_row_kernel_equals_single_row_kernel() {
        check_x4(Q8_0);
    }

    #[test]
    fn four_weight_row_kernel_equals_single_row_kernel() {
        check_w4(Q8_0);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(Q8_0);
    }
}

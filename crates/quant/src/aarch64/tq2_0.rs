//! TQ2_0 x Q8_K in the order of ggml's ARM `ggml_vec_dot_tq2_0_q8_K`: the 2-bit codes (0..2)
//! times the activations, less the activation sums (codes to -1..1), exact in integers; then
//! `sum += (d_w * d_x) * isum`, fused. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_bsums, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::TQ2_0;
const W_BYTES: usize = crate::tq2_0::BYTES;
const X_BYTES: usize = crate::q8_k::BLOCK_BYTES;

macro_rules! superblock {
    ($sb:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// `w` and `x` must be readable for one super-block each.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $sb(w: *const u8, x: *const u8, sum: f32) -> f32 {
            // SAFETY: one super-block each (caller); every offset stays inside.
            unsafe {
                let three = vdupq_n_u8(3);
                let mut isum = 0i32;
                for c in 0..2 {
                    let q = [vld1q_u8(w.add(32 * c)), vld1q_u8(w.add(32 * c + 16))];
                    for s in 0..4 {
                        for h in 0..2 {
                            let v = vandq_u8(vshlq_u8(q[h], vdupq_n_s8(-2 * s as i8)), three);
                            let g = 8 * c + 2 * s + h;
                            isum += dot16!($dot, vreinterpretq_s8_u8(v), q8k_16(x, g));
                        }
                    }
                }
                isum -= q8k_bsums(x).iter().sum::<i32>();
                (super::f16_at(w.add(64)) * q8k_d(x)).mul_add(isum as f32, sum)
            }
        }
    };
}

superblock!(sb_neon, "neon", sdot_emul);
superblock!(sb_dotprod, "neon,dotprod", sdot);
superblock_kernel!(dot_neon, "neon", sb_neon);
superblock_kernel!(dot_dotprod, "neon,dotprod", sb_dotprod);
neon_entry_points!(QK_K, W_BYTES, X_BYTES);

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::TQ2_0;

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(TQ2_0);
        check_w4(TQ2_0);
    }

    /// Against the scalar reference on Q8_K blocks with consistent sums (the block-format
    /// check's random activations are not valid Q8_K).
    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        use crate::testkit::kquant as ktest;
        let f = ktest::Format {
            name: "TQ2_0",
            block_bytes: crate::tq2_0::BYTES,
            d: 64,
            dmin: None,
            dequantize: crate::tq2_0::dequantize,
        };
        let mut levels: Vec<(&str, ktest::Kernel)> = vec![("neon", super::vec_dot_neon)];
        if super::super::has_dotprod() {
            levels.push(("dotprod", super::vec_dot_dotprod));
        }
        ktest::check_against_scalar(&f, crate::tq2_0::vec_dot, &levels);
    }
}

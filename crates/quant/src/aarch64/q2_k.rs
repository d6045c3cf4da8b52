//! Q2_K x Q8_K in the order of ggml's ARM `ggml_vec_dot_q2_K_q8_K`: per super-block the
//! exact integer sums of the scaled quants and of the mins, then `sum += dmin * mins` with
//! `dmin = -d_x * dmin_w` and `sum += d * isum`, each fused. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_bsums, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q2_K;
const W_BYTES: usize = crate::q2_k::BLOCK_BYTES;
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
                let yd = q8k_d(x);
                let d = yd * super::f16_at(w.add(80));
                let dmin = -yd * super::f16_at(w.add(82));
                let scales: [u8; 16] = std::array::from_fn(|g| *w.add(g));
                let bs = q8k_bsums(x);
                let mins: i32 = (0..16).map(|g| bs[g] * (scales[g] >> 4) as i32).sum();
                let three = vdupq_n_u8(3);
                let mut isum = 0i32;
                for c in 0..2 {
                    let q = [vld1q_u8(w.add(16 + 32 * c)), vld1q_u8(w.add(32 + 32 * c))];
                    for s in 0..4 {
                        for h in 0..2 {
                            let v = vandq_u8(vshlq_u8(q[h], vdupq_n_s8(-2 * s as i8)), three);
                            let g = 8 * c + 2 * s + h;
                            let p = dot16!($dot, vreinterpretq_s8_u8(v), q8k_16(x, g));
                            isum += p * (scales[g] & 0x0f) as i32;
                        }
                    }
                }
                let sum = dmin.mul_add(mins as f32, sum);
                d.mul_add(isum as f32, sum)
            }
        }
    };
}

superblock!(sb_neon, "neon", sdot_emul);
superblock!(sb_dotprod, "neon,dotprod", sdot);
superblock_kernel!(dot_neon, "neon", sb_neon);
superblock_kernel!(dot_dotprod, "neon,dotprod", sb_dotprod);
neon_entry_points!(QK_K, W_BYTES, X_BYTES);

kquant_tests!(Q2K, crate::q2_k::vec_dot);

//! Q3_K x Q8_K in the order of ggml's ARM `ggml_vec_dot_q3_K_q8_K`: per super-block the
//! exact integer sum of the signed 3-bit quants times their scales, then
//! `sum += (d_x * d_w) * isum`, fused. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q3_K;
const W_BYTES: usize = crate::q3_k::BLOCK_BYTES;
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
                let sc = crate::q3_k::unpack_scales(std::slice::from_raw_parts(w.add(96), 12));
                let three = vdupq_n_u8(3);
                let four = vdupq_n_u8(4);
                let hm = [vld1q_u8(w), vld1q_u8(w.add(16))];
                let mut isum = 0i32;
                for c in 0..2 {
                    let q = [vld1q_u8(w.add(32 + 32 * c)), vld1q_u8(w.add(48 + 32 * c))];
                    for s in 0..4 {
                        for h in 0..2 {
                            let low = vandq_u8(vshlq_u8(q[h], vdupq_n_s8(-2 * s as i8)), three);
                            // 4 to subtract where the high bit (4c + s) is clear.
                            let bit = vdupq_n_u8(1 << (4 * c + s));
                            let sub = vbicq_u8(four, vtstq_u8(hm[h], bit));
                            let v = vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(sub));
                            let g = 8 * c + 2 * s + h;
                            isum += dot16!($dot, v, q8k_16(x, g)) * sc[g] as i32;
                        }
                    }
                }
                let d = q8k_d(x) * super::f16_at(w.add(108));
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

kquant_tests!(Q3K, crate::q3_k::vec_dot);

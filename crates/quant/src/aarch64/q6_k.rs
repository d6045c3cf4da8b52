//! Q6_K x Q8_K in the order of ggml's ARM `ggml_vec_dot_q6_K_q8_K`: per super-block the
//! exact integer sum of the unsigned 6-bit quants times their scales, less 32 times the
//! scaled activation sums, then `sum += (d_w * d_x) * isum`, fused. Both flavours give the
//! same bits. (llama.cpp's repacked gemm, `sb_repack`, adds the product unfused.)

use std::arch::aarch64::*;

use super::{q8k_16, q8k_bsums, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q6_K;
const W_BYTES: usize = crate::q6_k::BLOCK_BYTES;
const X_BYTES: usize = crate::q8_k::BLOCK_BYTES;

macro_rules! superblock {
    ($sb:ident, $features:literal, $dot:ident) => {
        superblock!($sb, $features, $dot, false);
    };
    ($sb:ident, $features:literal, $dot:ident, $repack:expr) => {
        /// # Safety
        /// `w` and `x` must be readable for one super-block each.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $sb(w: *const u8, x: *const u8, sum: f32) -> f32 {
            const REPACK_ORDER: bool = $repack;
            // SAFETY: one super-block each (caller); every offset stays inside.
            unsafe {
                let sc: [i32; 16] = std::array::from_fn(|g| *w.add(192 + g) as i8 as i32);
                let bs = q8k_bsums(x);
                let mins: i32 = (0..16).map(|g| bs[g] * sc[g]).sum();
                let mask = vdupq_n_u8(0x0f);
                let three = vdupq_n_u8(3);
                let mut isum = 0i32;
                for c in 0..2 {
                    let ql = w.add(64 * c);
                    let qh = [vld1q_u8(w.add(128 + 32 * c)), vld1q_u8(w.add(144 + 32 * c))];
                    let l = [0, 16, 32, 48].map(|o| vld1q_u8(ql.add(o)));
                    // Groups of 16 in value order: low nibbles of ql[0..32], of ql[32..64],
                    // then the high nibbles, with qh's bit pairs 0, 1, 2, 3 on top.
                    for k in 0..8 {
                        let (quarter, h) = (k / 2, k % 2);
                        let nib = match quarter {
                            0 => vandq_u8(l[h], mask),
                            1 => vandq_u8(l[2 + h], mask),
                            2 => vshrq_n_u8(l[h], 4),
                            _ => vshrq_n_u8(l[2 + h], 4),
                        };
                        let hb = match quarter {
                            0 => qh[h],
                            1 => vshrq_n_u8(qh[h], 2),
                            2 => vshrq_n_u8(qh[h], 4),
                            _ => vshrq_n_u8(qh[h], 6),
                        };
                        let q = vorrq_u8(nib, vshlq_n_u8(vandq_u8(hb, three), 4));
                        let g = 8 * c + k;
                        isum += dot16!($dot, vreinterpretq_s8_u8(q), q8k_16(x, g)) * sc[g];
                    }
                }
                let dd = super::f16_at(w.add(208)) * q8k_d(x);
                let total = (isum - 32 * mins) as f32;
                if REPACK_ORDER {
                    // llama.cpp's repacked gemv/gemm: multiplied, then added.
                    sum + total * dd
                } else {
                    dd.mul_add(total, sum)
                }
            }
        }
    };
}

// llama.cpp's ARM repacked Q6_K gemm (`ggml_gemm_q6_K_8x4_q8_K`, `sdot`): the same exact
// integer total per super-block, then `acc + total * (d_w * d_x)`, not fused (its gemv is
// contracted by GCC into `vec_dot`'s fused order).
superblock!(sb_repack, "neon,dotprod", sdot, true);
superblock_kernel!(dot_repack, "neon,dotprod", sb_repack);
superblock_entry!(dot_repack, vec_dot_repack, vec_dot_repack_x4);

superblock!(sb_neon, "neon", sdot_emul);
superblock!(sb_dotprod, "neon,dotprod", sdot);
superblock_kernel!(dot_neon, "neon", sb_neon);
superblock_kernel!(dot_dotprod, "neon,dotprod", sb_dotprod);
neon_entry_points!(QK_K, W_BYTES, X_BYTES);

kquant_tests!(Q6K, crate::q6_k::vec_dot);

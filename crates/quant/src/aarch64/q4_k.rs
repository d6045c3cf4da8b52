//! Q4_K x Q8_K in the order of ggml's ARM `ggml_vec_dot_q4_K_q8_K`: per super-block the
//! integer sums of the eight sub-blocks (times their 6-bit scales) and of the mins (times
//! the activation's 32-value sums), then `sum -= dmin * mins` and `sum += d * sumi`, each
//! one fused multiply-add (GCC contracts both on aarch64), with `d = d_x * d_w` and
//! `dmin = d_x * dmin_w`. The integer sums are exact, so both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_bsums, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q4_K;
const W_BYTES: usize = crate::q4_k::BLOCK_BYTES;
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
                let d = yd * super::f16_at(w);
                let dmin = yd * super::f16_at(w.add(2));
                let (sc, m) = crate::k_common::unpack_scales_mins_k4(std::slice::from_raw_parts(
                    w.add(4),
                    12,
                ));
                let bs = q8k_bsums(x);
                let mins: i32 = (0..8)
                    .map(|j| (bs[2 * j] + bs[2 * j + 1]) * m[j] as i32)
                    .sum();
                let mask = vdupq_n_u8(0x0f);
                let mut sumi = 0i32;
                for c in 0..4 {
                    let v0 = vld1q_u8(w.add(16 + 32 * c));
                    let v1 = vld1q_u8(w.add(32 + 32 * c));
                    let lo = dot16!(
                        $dot,
                        vreinterpretq_s8_u8(vandq_u8(v0, mask)),
                        q8k_16(x, 4 * c)
                    ) + dot16!(
                        $dot,
                        vreinterpretq_s8_u8(vandq_u8(v1, mask)),
                        q8k_16(x, 4 * c + 1)
                    );
                    let hi = dot16!(
                        $dot,
                        vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)),
                        q8k_16(x, 4 * c + 2)
                    ) + dot16!(
                        $dot,
                        vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)),
                        q8k_16(x, 4 * c + 3)
                    );
                    sumi += lo * sc[2 * c] as i32 + hi * sc[2 * c + 1] as i32;
                }
                let sum = (-dmin).mul_add(mins as f32, sum);
                d.mul_add(sumi as f32, sum)
            }
        }
    };
}

/// One super-block in the order of llama.cpp's ARM repacked Q4_K (`ggml_gemv/gemm_q4_K_8x4_q8_K`,
/// `sdot`): per 64 values `acc = fma(d_w * d_x, sc_lo * s_lo + sc_hi * s_hi, acc)`, then
/// `acc - mins * (dmin_w * d_x)`, multiplied then subtracted.
///
/// # Safety
/// `w` and `x` must be readable for one super-block each; the CPU must have `sdot`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sb_repack(w: *const u8, x: *const u8, acc: f32) -> f32 {
    // SAFETY: one super-block each (caller); every offset stays inside.
    unsafe {
        let yd = q8k_d(x);
        let (dd, dm) = (super::f16_at(w) * yd, super::f16_at(w.add(2)) * yd);
        let (sc, m) =
            crate::k_common::unpack_scales_mins_k4(std::slice::from_raw_parts(w.add(4), 12));
        let bs = q8k_bsums(x);
        let mins: i32 = (0..8)
            .map(|j| (bs[2 * j] + bs[2 * j + 1]) * m[j] as i32)
            .sum();
        let mask = vdupq_n_u8(0x0f);
        let mut acc = acc;
        for c in 0..4 {
            let v0 = vld1q_u8(w.add(16 + 32 * c));
            let v1 = vld1q_u8(w.add(32 + 32 * c));
            let lo = dot16!(
                sdot,
                vreinterpretq_s8_u8(vandq_u8(v0, mask)),
                q8k_16(x, 4 * c)
            ) + dot16!(
                sdot,
                vreinterpretq_s8_u8(vandq_u8(v1, mask)),
                q8k_16(x, 4 * c + 1)
            );
            let hi = dot16!(
                sdot,
                vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)),
                q8k_16(x, 4 * c + 2)
            ) + dot16!(
                sdot,
                vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)),
                q8k_16(x, 4 * c + 3)
            );
            acc = dd.mul_add(
                (lo * sc[2 * c] as i32 + hi * sc[2 * c + 1] as i32) as f32,
                acc,
            );
        }
        acc - mins as f32 * dm
    }
}

superblock_kernel!(dot_repack, "neon,dotprod", sb_repack);
superblock_entry!(dot_repack, vec_dot_repack, vec_dot_repack_x4);

superblock!(sb_neon, "neon", sdot_emul);
superblock!(sb_dotprod, "neon,dotprod", sdot);
superblock_kernel!(dot_neon, "neon", sb_neon);
superblock_kernel!(dot_dotprod, "neon,dotprod", sb_dotprod);
neon_entry_points!(QK_K, W_BYTES, X_BYTES);

kquant_tests!(Q4K, crate::q4_k::vec_dot);

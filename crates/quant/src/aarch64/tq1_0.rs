//! TQ1_0 x Q8_K in the order of ggml's ARM `ggml_vec_dot_tq1_0_q8_K`: the base-3 packed codes
//! (five per byte, then four) unpacked with ggml's multiply-and-take-the-high-byte trick, times
//! the activations, less the activation sums (codes to -1..1), exact in integers; then
//! `sum += (d_w * d_x) * isum`, fused. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_bsums, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::TQ1_0;
const W_BYTES: usize = crate::tq1_0::BYTES;
const X_BYTES: usize = crate::q8_k::BLOCK_BYTES;

/// The trits of bytes `v` each multiplied (mod 256) by `mult`: `(v * mult mod 256) * 3 >> 8`.
#[inline]
#[target_feature(enable = "neon")]
fn trits(v: uint8x16_t, mult: uint8x16_t) -> int8x16_t {
    let m = vmulq_u8(v, mult);
    let three = vdupq_n_u8(3);
    let lo = vshrn_n_u16::<8>(vmull_u8(vget_low_u8(m), vget_low_u8(three)));
    let hi = vshrn_n_u16::<8>(vmull_high_u8(m, three));
    vreinterpretq_s8_u8(vcombine_u8(lo, hi))
}

macro_rules! superblock {
    ($sb:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// `w` and `x` must be readable for one super-block each.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $sb(w: *const u8, x: *const u8, sum: f32) -> f32 {
            // SAFETY: one super-block each (caller); every offset stays inside.
            unsafe {
                const POW3: [u8; 5] = [1, 3, 9, 27, 81];
                let mut isum = 0i32;
                // Elements 0..160: bytes 0..32, five trits each (trit n of byte b is element
                // 32n + b).
                let a = [vld1q_u8(w), vld1q_u8(w.add(16))];
                for (n, &p) in POW3.iter().enumerate() {
                    for (h, &v) in a.iter().enumerate() {
                        let t = trits(v, vdupq_n_u8(p));
                        isum += dot16!($dot, t, q8k_16(x, 2 * n + h));
                    }
                }
                // Elements 160..240: bytes 32..48, five trits each (element 160 + 16n + b).
                let b = vld1q_u8(w.add(32));
                for (n, &p) in POW3.iter().enumerate() {
                    isum += dot16!($dot, trits(b, vdupq_n_u8(p)), q8k_16(x, 10 + n));
                }
                // Elements 240..256: bytes 48..52, four trits each (element 240 + 4n + b).
                let q = (w.add(48) as *const u32).read_unaligned();
                let mult: [u8; 16] = std::array::from_fn(|i| POW3[i / 4]);
                let t = trits(
                    vreinterpretq_u8_u32(vdupq_n_u32(q)),
                    vld1q_u8(mult.as_ptr()),
                );
                isum += dot16!($dot, t, q8k_16(x, 15));
                isum -= q8k_bsums(x).iter().sum::<i32>();
                (super::f16_at(w.add(52)) * q8k_d(x)).mul_add(isum as f32, sum)
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
    use crate::GgmlType::TQ1_0;

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(TQ1_0);
        check_w4(TQ1_0);
    }

    /// Against the scalar reference on Q8_K blocks with consistent sums (the block-format
    /// check's random activations are not valid Q8_K).
    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        use crate::testkit::kquant as ktest;
        let f = ktest::Format {
            name: "TQ1_0",
            block_bytes: crate::tq1_0::BYTES,
            d: 52,
            dmin: None,
            dequantize: crate::tq1_0::dequantize,
        };
        let mut levels: Vec<(&str, ktest::Kernel)> = vec![("neon", super::vec_dot_neon)];
        if super::super::has_dotprod() {
            levels.push(("dotprod", super::vec_dot_dotprod));
        }
        ktest::check_against_scalar(&f, crate::tq1_0::vec_dot, &levels);
    }
}

//! IQ4_XS x Q8_K in the order of ggml's ARM `ggml_vec_dot_iq4_xs_q8_K`: codes looked up in the
//! non-linear table (`tbl`), the super-block's integer sum (groups times their 6-bit scales)
//! exact, then `sum += (d_w * d_x) * sumi`, fused. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{q8k_16, q8k_d, sdot, sdot_emul};
use crate::k_common::QK_K;
use crate::GgmlType;

const TY: GgmlType = GgmlType::IQ4_XS;
const W_BYTES: usize = crate::iq4_xs::BYTES;
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
                let b = std::slice::from_raw_parts(w, W_BYTES);
                let table = vld1q_s8(crate::iq4_nl::KVALUES.as_ptr());
                let mask = vdupq_n_u8(0x0f);
                let mut sumi = 0i32;
                for g in 0..8 {
                    let v = vld1q_u8(w.add(8 + 16 * g));
                    let lo = vqtbl1q_s8(table, vandq_u8(v, mask));
                    let hi = vqtbl1q_s8(table, vshrq_n_u8(v, 4));
                    let p = $dot(
                        $dot(vdupq_n_s32(0), lo, q8k_16(x, 2 * g)),
                        hi,
                        q8k_16(x, 2 * g + 1),
                    );
                    sumi += vaddvq_s32(p) * crate::iq4_xs::group_scale(b, g);
                }
                (super::f16_at(w) * q8k_d(x)).mul_add(sumi as f32, sum)
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
    use crate::GgmlType::IQ4_XS;

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(IQ4_XS);
        check_w4(IQ4_XS);
    }

    /// Against the scalar reference on Q8_K blocks with consistent sums (the block-format
    /// check's random activations are not valid Q8_K).
    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        use crate::testkit::kquant as ktest;
        let f = ktest::Format {
            name: "IQ4_XS",
            block_bytes: crate::iq4_xs::BYTES,
            d: 0,
            dmin: None,
            dequantize: crate::iq4_xs::dequantize,
        };
        let mut levels: Vec<(&str, ktest::Kernel)> = vec![("neon", super::vec_dot_neon)];
        if super::super::has_dotprod() {
            levels.push(("dotprod", super::vec_dot_dotprod));
        }
        ktest::check_against_scalar(&f, crate::iq4_xs::vec_dot, &levels);
    }
}

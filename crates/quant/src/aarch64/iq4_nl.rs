//! IQ4_NL x Q8_0 in the order of ggml's ARM `ggml_vec_dot_iq4_nl_q8_0`: codes looked up in the
//! non-linear table (`tbl`), each block's integer sum exact; blocks two at a time,
//! `sum += (d_w0 * d_x0) * s0 + (d_w1 * d_x1) * s1`, which GCC contracts on aarch64 to
//! `sum + fma(d_w0 * d_x0, s0, (d_w1 * d_x1) * s1)`; an odd last block adds
//! `fma(d_x * d_w, s, sum)`. Both flavours give the same bits.

use std::arch::aarch64::*;

use super::{sdot, sdot_emul};
use crate::GgmlType;

const TY: GgmlType = GgmlType::IQ4_NL;
const W_BYTES: usize = crate::iq4_nl::BYTES;
const X_BYTES: usize = crate::q8_0::BYTES;

macro_rules! kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the `RW` weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Each pair of rows is its own chain,
        /// so each result is the same whatever `RW` and `R`.
        #[target_feature(enable = $features)]
        unsafe fn $name<const RW: usize, const R: usize>(
            nb: usize,
            w: [*const u8; RW],
            x: [*const u8; R],
        ) -> [[f32; R]; RW] {
            // SAFETY: the table is 16 bytes.
            let table = unsafe { vld1q_s8(crate::iq4_nl::KVALUES.as_ptr()) };
            let mask = vdupq_n_u8(0x0f);
            // SAFETY (both closures): blocks in bounds (caller).
            let block = |bw: *const u8, bx: *const u8| unsafe {
                let v = vld1q_u8(bw.add(2));
                let lo = vqtbl1q_s8(table, vandq_u8(v, mask));
                let hi = vqtbl1q_s8(table, vshrq_n_u8(v, 4));
                let y0 = vld1q_s8(bx.add(2) as *const i8);
                let y1 = vld1q_s8(bx.add(18) as *const i8);
                vaddvq_s32($dot($dot(vdupq_n_s32(0), lo, y0), hi, y1))
            };
            let scale =
                |bw: *const u8, bx: *const u8| unsafe { (super::f16_at(bw), super::f16_at(bx)) };
            let mut out = [[0f32; R]; RW];
            for (o, wr) in out.iter_mut().zip(w) {
                for (o, xr) in o.iter_mut().zip(x) {
                    let mut sum = 0f32;
                    for p in 0..nb / 2 {
                        // SAFETY: blocks 2p and 2p + 1 are in bounds (caller).
                        let (bw, bx) =
                            unsafe { (wr.add(2 * p * W_BYTES), xr.add(2 * p * X_BYTES)) };
                        // SAFETY: as above.
                        let (bw1, bx1) = unsafe { (bw.add(W_BYTES), bx.add(X_BYTES)) };
                        let (s0, s1) = (block(bw, bx), block(bw1, bx1));
                        let ((dw0, dx0), (dw1, dx1)) = (scale(bw, bx), scale(bw1, bx1));
                        sum += (dw0 * dx0).mul_add(s0 as f32, (dw1 * dx1) * s1 as f32);
                    }
                    if nb % 2 == 1 {
                        // SAFETY: the last block is in bounds (caller).
                        let (bw, bx) =
                            unsafe { (wr.add((nb - 1) * W_BYTES), xr.add((nb - 1) * X_BYTES)) };
                        let (dw, dx) = scale(bw, bx);
                        sum = (dx * dw).mul_add(block(bw, bx) as f32, sum);
                    }
                    *o = sum;
                }
            }
            out
        }
    };
}

/// A block's exact integer sum with `sdot`.
///
/// # Safety
/// One block each; the CPU must have the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn isum(w: *const u8, x: *const u8) -> i32 {
    // SAFETY: one block each (caller).
    unsafe {
        let table = vld1q_s8(crate::iq4_nl::KVALUES.as_ptr());
        let v = vld1q_u8(w.add(2));
        let lo = vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0x0f)));
        let hi = vqtbl1q_s8(table, vshrq_n_u8(v, 4));
        let y0 = vld1q_s8(x.add(2) as *const i8);
        let y1 = vld1q_s8(x.add(18) as *const i8);
        vaddvq_s32(sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1))
    }
}

// llama.cpp's repacked order (`ggml_gemv/gemm_iq4_nl_4x4_q8_0`): unfused, gemv and gemm alike.
chain_kernel!(dot_repack, vec_dot_repack, vec_dot_repack_x4, isum, false);

kernel!(dot_neon, "neon", sdot_emul);
kernel!(dot_dotprod, "neon,dotprod", sdot);
neon_entry_points!(32, W_BYTES, X_BYTES);

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::IQ4_NL;

    #[test]
    fn close_to_the_x86_fixture() {
        check_fixture(IQ4_NL, Exact::Both);
    }

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(IQ4_NL);
        check_w4(IQ4_NL);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(IQ4_NL);
    }
}

//! Q8_0 x Q8_0 in the order of ggml's ARM `ggml_vec_dot_q8_0_q8_0` (see `block32_kernel!`);
//! the odd last block is added as `sumi * (d_w * d_x)`, fused.

use std::arch::aarch64::*;

use super::{idot32, sdot, sdot_emul};
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q8_0;
const W_BYTES: usize = crate::q8_0::BYTES;
const X_BYTES: usize = crate::q8_0::BYTES;
const X_QS: usize = 2;

/// A block's 32 weights as signed bytes.
///
/// # Safety
/// `b` must be readable for one block.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack(b: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the 32 quant bytes follow the 2-byte scale (caller).
    unsafe {
        (
            vld1q_s8(b.add(2) as *const i8),
            vld1q_s8(b.add(18) as *const i8),
        )
    }
}

#[inline]
fn min_pair(_: *const u8, _: *const u8, _: *const u8, _: *const u8, _: &mut [f32; 2]) {}

#[inline]
fn finish(v: f32, _: [f32; 2]) -> f32 {
    v
}

/// # Safety
/// `w` and `x` must be readable for one block each.
unsafe fn tail(s: f32, w: *const u8, x: *const u8) -> f32 {
    // SAFETY: one block each (caller).
    unsafe {
        let q: [i8; 32] = std::array::from_fn(|j| *w.add(2 + j) as i8);
        let sumi = idot32(&q, x.add(X_QS));
        (sumi as f32).mul_add(super::f16_at(w) * super::f16_at(x), s)
    }
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
        let (lo, hi) = unpack(w);
        let y0 = vld1q_s8(x.add(X_QS) as *const i8);
        let y1 = vld1q_s8(x.add(X_QS + 16) as *const i8);
        vaddvq_s32(sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1))
    }
}

// llama.cpp's repacked order (`ggml_gemm_q8_0_4x4_q8_0` adds unfused, `ggml_gemv_...` fused).
chain_kernel!(
    dot_repack_gemm,
    vec_dot_repack_gemm,
    vec_dot_repack_gemm_x4,
    isum,
    false
);
chain_kernel!(
    dot_repack_gemv,
    vec_dot_repack_gemv,
    vec_dot_repack_gemv_x4,
    isum,
    true
);

block32_kernel!(dot_neon, "neon", sdot_emul);
block32_kernel!(dot_dotprod, "neon,dotprod", sdot);
neon_entry_points!(32, W_BYTES, X_BYTES);

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::Q8_0;

    #[test]
    fn close_to_the_x86_fixture() {
        check_fixture(Q8_0, Exact::Both);
    }

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(Q8_0);
        check_w4(Q8_0);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(Q8_0);
    }
}

//! Q4_1 x Q8_1 in the order of ggml's ARM `ggml_vec_dot_q4_1_q8_1` (see `block32_kernel!`):
//! nibbles as they are; the offsets `m_w * s_x` of a pair of blocks summed into one scalar
//! (`summs += m0 * s0 + m1 * s1`, which GCC contracts to `summs + fma(m0, s0, m1 * s1)`),
//! added after the vector sums; an odd last block adds `fma(d_w * d_x, sumi, m_w * s_x)`.

use std::arch::aarch64::*;

use super::{idot32, sdot, sdot_emul};
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q4_1;
const W_BYTES: usize = crate::q4_1::BYTES;
const X_BYTES: usize = crate::q8_1::BYTES;
const X_QS: usize = 4;

/// A block's 32 weights as bytes: low nibbles, then high ones.
///
/// # Safety
/// `b` must be readable for one block.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack(b: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the 16 quant bytes follow the two 2-byte fields (caller).
    let v = unsafe { vld1q_u8(b.add(4)) };
    (
        vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))),
        vreinterpretq_s8_u8(vshrq_n_u8(v, 4)),
    )
}

/// `m_w * s_x` of a block.
///
/// # Safety
/// Both blocks readable.
#[inline]
unsafe fn offset(w: *const u8, x: *const u8) -> (f32, f32) {
    // SAFETY: the second f16 of each block (caller).
    unsafe { (super::f16_at(w.add(2)), super::f16_at(x.add(2))) }
}

#[inline]
fn min_pair(w0: *const u8, x0: *const u8, w1: *const u8, x1: *const u8, m: &mut [f32; 2]) {
    // SAFETY: called by the kernel on in-bounds blocks.
    let ((m0, s0), (m1, s1)) = unsafe { (offset(w0, x0), offset(w1, x1)) };
    m[0] += m0.mul_add(s0, m1 * s1);
}

#[inline]
fn finish(v: f32, m: [f32; 2]) -> f32 {
    v + m[0]
}

/// # Safety
/// `w` and `x` must be readable for one block each.
unsafe fn tail(s: f32, w: *const u8, x: *const u8) -> f32 {
    // SAFETY: one block each (caller).
    unsafe {
        let q: [i8; 32] = std::array::from_fn(|j| {
            let b = *w.add(4 + j % 16);
            (if j < 16 { b & 0x0f } else { b >> 4 }) as i8
        });
        let sumi = idot32(&q, x.add(X_QS));
        let (m, sx) = offset(w, x);
        let dd = super::f16_at(w) * super::f16_at(x);
        s + dd.mul_add(sumi as f32, m * sx)
    }
}

block32_kernel!(dot_neon, "neon", sdot_emul);
block32_kernel!(dot_dotprod, "neon,dotprod", sdot);
neon_entry_points!(32, W_BYTES, X_BYTES);

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::Q4_1;

    #[test]
    fn close_to_the_x86_fixture() {
        check_fixture(Q4_1, Exact::Both);
    }

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(Q4_1);
        check_w4(Q4_1);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(Q4_1);
    }
}

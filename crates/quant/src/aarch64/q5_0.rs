//! Q5_0 x Q8_0 in the order of ggml's ARM `ggml_vec_dot_q5_0_q8_0` (see `block32_kernel!`):
//! nibbles with their fifth bit, offset to [-16, 15]; an odd last block adds
//! `fma(d_w * d_x, sumi, s)`.

use std::arch::aarch64::*;

use super::{idot32, sdot, sdot_emul};
use crate::GgmlType;

const TY: GgmlType = GgmlType::Q5_0;
const W_BYTES: usize = crate::q5_0::BYTES;
const X_BYTES: usize = crate::q8_0::BYTES;
const X_QS: usize = 2;
/// Offset of the fifth bits (`qh`) and of the nibbles in a block.
const QH: usize = 2;
const QS: usize = 6;

/// The 32 fifth bits at `qh` as bytes 0x10 (bit set) or 0: element j takes bit j.
///
/// # Safety
/// `qh` must be readable for 4 bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn high_bits(qh: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: 4 readable bytes (caller).
    let bits = unsafe { (qh as *const u32).read_unaligned() };
    let v = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    let spread = |lo: u8| {
        let idx: [u8; 16] = std::array::from_fn(|j| lo + (j / 8) as u8);
        // SAFETY: 16 readable bytes.
        vqtbl1q_u8(v, unsafe { vld1q_u8(idx.as_ptr()) })
    };
    let mask: [u8; 16] = std::array::from_fn(|j| 1 << (j % 8));
    // SAFETY: 16 readable bytes.
    let mask = unsafe { vld1q_u8(mask.as_ptr()) };
    let sixteen = vdupq_n_u8(0x10);
    (
        vandq_u8(vtstq_u8(spread(0), mask), sixteen),
        vandq_u8(vtstq_u8(spread(2), mask), sixteen),
    )
}

/// A block's 32 unsigned 5-bit values (before any offset), scalar.
///
/// # Safety
/// `b` must be readable for one block.
unsafe fn values(b: *const u8) -> [i8; 32] {
    // SAFETY: one block (caller).
    unsafe {
        let qh = (b.add(QH) as *const u32).read_unaligned();
        std::array::from_fn(|j| {
            let q = *b.add(QS + j % 16);
            let nib = if j < 16 { q & 0x0f } else { q >> 4 };
            (nib | (((qh >> j) & 1) << 4) as u8) as i8
        })
    }
}

/// A block's 32 weights as signed bytes.
///
/// # Safety
/// `b` must be readable for one block.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack(b: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: one block (caller).
    let (v, (hl, hh)) = unsafe { (vld1q_u8(b.add(QS)), high_bits(b.add(QH))) };
    let lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), hl);
    let hi = vorrq_u8(vshrq_n_u8(v, 4), hh);
    let off = vdupq_n_s8(OFFSET);
    (
        vsubq_s8(vreinterpretq_s8_u8(lo), off),
        vsubq_s8(vreinterpretq_s8_u8(hi), off),
    )
}

const OFFSET: i8 = 16;

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
        let q = values(w).map(|v| v - OFFSET);
        let sumi = idot32(&q, x.add(X_QS));
        (super::f16_at(w) * super::f16_at(x)).mul_add(sumi as f32, s)
    }
}

block32_kernel!(dot_neon, "neon", sdot_emul);
block32_kernel!(dot_dotprod, "neon,dotprod", sdot);
neon_entry_points!(32, W_BYTES, X_BYTES);

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::Q5_0;

    #[test]
    fn close_to_the_x86_fixture() {
        check_fixture(Q5_0, Exact::Both);
    }

    #[test]
    fn four_row_kernels_equal_single_row_kernels() {
        check_x4(Q5_0);
        check_w4(Q5_0);
    }

    #[test]
    fn agrees_with_scalar_on_random_and_edge_blocks() {
        check_against_scalar(Q5_0);
    }
}

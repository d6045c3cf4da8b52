//! TQ2_0: ternary weights (-1, 0, +1 times a scale) for BitNet-style models, 2 bits each:
//! super-blocks of 256 values, 66 bytes:
//!
//! | bytes  | field                                                                  |
//! |--------|------------------------------------------------------------------------|
//! | 0..64  | `qs`: in each 32-byte half, byte m holds elements m, m+32, m+64, m+96 of |
//! |        | that half's 128 in its bit pairs 0-1, 2-3, 4-5, 6-7 (value + 1: 0..2)  |
//! | 64..66 | `d`: f16 scale (the block's largest magnitude)                          |

use crate::k_common::QK_K;
use crate::q8_k::{block_d, block_qs};
use crate::scalar::{le_f16, put_f16};

pub const BYTES: usize = 66;
const D: usize = 64;

/// The ternary code (0, 1, 2 for -1, 0, +1) of element `e` of a block.
#[inline]
pub(crate) fn code(b: &[u8], e: usize) -> u8 {
    let (half, r) = (e / 128, e % 128);
    (b[half * 32 + r % 32] >> (2 * (r / 32))) & 3
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = le_f16(b, D);
        for (e, v) in y.iter_mut().enumerate() {
            *v = (code(b, e) as i32 - 1) as f32 * d;
        }
    }
}

/// ggml's `quantize_row_tq2_0_ref`: scale = largest magnitude, each value rounded to -1/0/+1
/// of it (half away from zero).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 1.0 / amax } else { 0.0 };
        put_f16(b, D, amax);
        b[..D].fill(0);
        for (e, &v) in x.iter().enumerate() {
            let q = ((v * id).round() as i32 + 1) as u8 & 3;
            let (half, r) = (e / 128, e % 128);
            b[half * 32 + r % 32] |= q << (2 * (r / 32));
        }
    }
}

/// The 8 lane sums ggml's AVX2 kernel forms for one block (see [`crate::tq1_0::lanes_of`]).
#[cfg(test)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn lane_sums(bw: &[u8], bx: &[u8]) -> [i32; 8] {
    crate::tq1_0::lanes_of(|e| code(bw, e), bx)
}

/// Dot with a Q8_K row in ggml's scalar order (no FMA): per block the exact integer sum
/// times `d_x * d_w`, accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
    {
        let qs = block_qs(bx);
        let sumi: i32 = (0..QK_K)
            .map(|e| qs[e] as i8 as i32 * (code(bw, e) as i32 - 1))
            .sum();
        sumf += sumi as f32 * (block_d(bx) * le_f16(bw, D));
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::TQ2_0,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::check_format_hashes;

    #[test]
    /// Hashes from scripts/quant-goldens: `matmul_hash tq2_0 512 32 1 plain 1 detail`.
    fn quantize_and_dequantize_equal_ggml() {
        check_format_hashes(
            crate::GgmlType::TQ2_0,
            (512, 32),
            0xe558_b8ce_5f31_c37e,
            0xc2ff_3549_184c_6122,
        );
    }

    #[test]
    fn codes_sit_where_ggml_puts_them() {
        let x: Vec<f32> = (0..QK_K).map(|e| [(-1.0), 0.0, 1.0][e % 3]).collect();
        let mut b = [0u8; BYTES];
        quantize(&x, &mut b);
        let mut back = vec![0f32; QK_K];
        dequantize(&b, &mut back);
        assert_eq!(back, x);
        // Element 32 is in bits 2-3 of byte 0; element 128 opens the second half.
        assert_eq!(code(&b, 32), (32 % 3) as u8);
        assert_eq!(b[32] & 3, (128 % 3) as u8);
    }
}

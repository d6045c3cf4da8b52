//! Q8_K: the activation format every K-quant weight is dotted with.
//!
//! Block of 256 values, 292 bytes, little endian (ggml `block_q8_K`):
//!
//! | offset | size | field                                                       |
//! |--------|------|-------------------------------------------------------------|
//! | 0      | 4    | `d`: f32 scale                                              |
//! | 4      | 256  | `qs`: i8 quants, value = d * q                              |
//! | 260    | 32   | `bsums`: 16 x i16, sum of each consecutive group of 16 `qs` |
//!
//! `bsums` lets the weight kernels apply per-group minimums without touching `qs` again.
//! Unlike Q8_0 the scale is a full f32, so the quantization is "-127/max" with the sign of
//! the largest-magnitude value, exactly as `quantize_row_q8_K_ref`.

use crate::k_common::{nearest_int, QK_K};

pub const BLOCK_BYTES: usize = 292;
const QS: usize = 4;
const BSUMS: usize = 260;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = block_d(b);
        for (v, &q) in y.iter_mut().zip(&b[QS..QS + QK_K]) {
            *v = d * q as i8 as f32;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves bsums untouched here; zero is the only value consistent with qs.
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b[QS..QS + QK_K].iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8 as u8;
        }
        for g in 0..QK_K / 16 {
            let sum: i32 = b[QS + 16 * g..QS + 16 * g + 16]
                .iter()
                .map(|&q| q as i8 as i32)
                .sum();
            b[BSUMS + 2 * g..BSUMS + 2 * g + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// The f32 scale of one block.
#[inline]
pub fn block_d(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The 256 quants of one block.
#[inline]
pub fn block_qs(b: &[u8]) -> &[u8] {
    &b[QS..QS + QK_K]
}

/// Group sum `g` (0..16) of one block.
#[inline]
pub fn block_bsum(b: &[u8], g: usize) -> i16 {
    i16::from_le_bytes([b[BSUMS + 2 * g], b[BSUMS + 2 * g + 1]])
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q8_K,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{check_dequantize_fixture, check_quantize_fixture};

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q8_K", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bit_exact() {
        check_dequantize_fixture("Q8_K", dequantize);
    }

    #[test]
    fn all_zero_block_is_all_zero_bytes() {
        let mut out = vec![0xAAu8; BLOCK_BYTES];
        quantize(&[0.0; QK_K], &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }
}

//! IQ4_XS: super-blocks of 256 weights, 136 bytes each, on IQ4_NL's non-linear grid with a
//! 6-bit scale per group of 32:
//!
//! | bytes  | field                                                                |
//! |--------|----------------------------------------------------------------------|
//! | 0..2   | `d`: f16 super-block scale                                           |
//! | 2..4   | `scales_h`: u16, bits 2g..2g+2 are the high 2 bits of group g's scale |
//! | 4..8   | `scales_l`: byte g/2 holds the low 4 bits of group g (g odd: high)   |
//! | 8..136 | `qs`: 16 bytes per group, laid out like an IQ4_NL block              |
//!
//! Element = `d * (ls - 32) * KVALUES[code]` with `ls` the group's 6-bit scale. Same grid as
//! IQ4_NL at 4.25 bits per weight instead of 4.5: the per-group f16 scales become 6 bits.

use crate::iq4_nl::{block_sum, quantize_superblock, KVALUES, NTRY};
use crate::k_common::QK_K;
use crate::scalar::{le_f16, le_u16};

pub const BYTES: usize = 136;
const SCALES_H: usize = 2;
const SCALES_L: usize = 4;
const QS: usize = 8;
/// Offsets in a Q8_K block (see [`crate::q8_k`]).
const Y_QS: usize = 4;

/// The signed scale (`ls - 32`) of group `g` of block `b`.
#[inline]
pub(crate) fn group_scale(b: &[u8], g: usize) -> i32 {
    let lo = (b[SCALES_L + g / 2] >> (4 * (g % 2))) & 0x0f;
    let hi = (le_u16(b, SCALES_H) >> (2 * g)) & 3;
    (lo as i32 | (hi as i32) << 4) - 32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = le_f16(b, 0);
        for (g, yg) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * group_scale(b, g) as f32;
            let qs = &b[QS + 16 * g..QS + 16 * g + 16];
            for j in 0..16 {
                yg[j] = dl * KVALUES[(qs[j] & 0x0f) as usize] as f32;
                yg[j + 16] = dl * KVALUES[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        let (head, qs) = b.split_at_mut(QS);
        let mut scales_h = [0u8; 2];
        let mut scales_l = [0u8; 4];
        let d = quantize_superblock(x, qs, &mut scales_h, &mut scales_l, NTRY, None);
        head[..2].copy_from_slice(&d.to_le_bytes());
        head[SCALES_H..SCALES_L].copy_from_slice(&scales_h);
        head[SCALES_L..QS].copy_from_slice(&scales_l);
    }
}

/// ggml's `quantize_iq4_xs` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        let (head, qs) = b.split_at_mut(QS);
        let mut scales_h = [0u8; 2];
        let mut scales_l = [0u8; 4];
        let d = quantize_superblock(x, qs, &mut scales_h, &mut scales_l, NTRY, Some(w));
        head[..2].copy_from_slice(&d.to_le_bytes());
        head[SCALES_H..SCALES_L].copy_from_slice(&scales_h);
        head[SCALES_L..QS].copy_from_slice(&scales_l);
    }
}

/// The exact integer sum of one super-block against a Q8_K block: `sum_g scale_g * dot_g`.
#[inline]
pub(crate) fn superblock_sum(bw: &[u8], bx: &[u8]) -> i32 {
    (0..8)
        .map(|g| {
            let (lo, hi) = block_sum(&bw[QS + 16 * g..], &bx[Y_QS + 32 * g..]);
            group_scale(bw, g) * (lo + hi)
        })
        .sum()
}

fn q8k_d(bx: &[u8]) -> f32 {
    f32::from_le_bytes([bx[0], bx[1], bx[2], bx[3]])
}

/// Dot with a Q8_K row in ggml's scalar order (no FMA): each group's integer sum times
/// `d_w * d_x * scale`, accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
    {
        let d4d8 = le_f16(bw, 0) * q8k_d(bx);
        for g in 0..8 {
            let (lo, hi) = block_sum(&bw[QS + 16 * g..], &bx[Y_QS + 32 * g..]);
            let dl = d4d8 * group_scale(bw, g) as f32;
            sumf += dl * (lo + hi) as f32;
        }
    }
    sumf
}

/// Dot with a Q8_K row in the order of llama.cpp's tiled matmul (which its x86 build uses
/// for 8 or more tokens): per super-block `r = d_w * S` with `S` the exact integer sum, then
/// one fused multiply-add `acc += d_x * r`.
pub fn vec_dot_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
    {
        let r = le_f16(bw, 0) * superblock_sum(bw, bx) as f32;
        acc = q8k_d(bx).mul_add(r, acc);
    }
    acc
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ4_XS,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ4_XS,
            [
                (0x90a9_5e99_0e57_5461, 0x27f4_ba54_4791_201b),
                (0x2bcd_9f91_5707_9b05, 0x3f10_6b38_ea71_3cbf),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("IQ4_XS", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("IQ4_XS", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        check_dot_fixture(
            "IQ4_XS",
            &fixture_rows("IQ4_XS"),
            vec_dot,
            crate::q8_k::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns_sized(
            "IQ4_XS",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_k::quantize,
            4096 / QK_K * crate::q8_k::BLOCK_BYTES,
        );
    }

    #[test]
    fn group_scales_unpack_six_bits() {
        let mut b = [0u8; BYTES];
        // group 0: ls 63 (max) -> +31; group 1: ls 0 -> -32; group 7: ls 0b10_0101 -> 5.
        b[SCALES_L] = 0x0f;
        b[SCALES_L + 3] = 0x50;
        b[SCALES_H..SCALES_L].copy_from_slice(&(0b11u16 | 0b10 << 14).to_le_bytes());
        assert_eq!(group_scale(&b, 0), 31);
        assert_eq!(group_scale(&b, 1), -32);
        assert_eq!(group_scale(&b, 7), 5);
    }
}

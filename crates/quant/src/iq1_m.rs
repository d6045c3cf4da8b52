//! IQ1_M: 1.75 bits per weight. Super-blocks of 256 weights, 56 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..32  | one byte per group of 8: the low 8 bits of its index into [`IQ1S_GRID`] |
//! | 32..48 | one byte per two groups: each nibble the high 3 bits of a group's index (bits 0..3) and the sign of its delta (bit 3) |
//! | 48..56 | four u16: 3-bit scales of the 16 half sub-blocks in their low 12 bits, and in their top nibbles the f16 super-block scale `d` (first u16: lowest nibble) |
//!
//! Weight = `d * (2 ls3 + 1) * (value ± 1/8)`. See [`crate::iq1`].

use crate::iq1::{Sub, Ternary, IQ1S_GRID};
use crate::k_common::QK_K;
use crate::scalar::{fp16_to_f32, le_u16};

pub const BYTES: usize = 56;
const QH: usize = 32;
const SCALES: usize = 48;

/// The IQ1_M layout, for [`crate::iq1`]'s generic code.
pub struct Iq1M;

impl Ternary for Iq1M {
    const BYTES: usize = BYTES;
    const S2_IN_LANES: bool = true;
    fn d(b: &[u8]) -> f32 {
        let sc: [u16; 4] = std::array::from_fn(|i| le_u16(b, SCALES + 2 * i));
        fp16_to_f32(
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000),
        )
    }
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let qh = [b[QH + 2 * ib] as usize, b[QH + 2 * ib + 1] as usize];
        let sc = le_u16(b, SCALES + 2 * (ib / 2)) as i32;
        let shift = 6 * (ib % 2);
        Sub {
            grid: std::array::from_fn(|l| {
                let hi = (qh[l / 2] << if l % 2 == 0 { 8 } else { 4 }) & 0x700;
                IQ1S_GRID[b[4 * ib + l] as usize | hi]
            }),
            delta_neg: std::array::from_fn(|l| {
                qh[l / 2] & if l % 2 == 0 { 0x08 } else { 0x80 } != 0
            }),
            ls: [
                2 * ((sc >> shift) & 7) + 1,
                2 * ((sc >> (shift + 3)) & 7) + 1,
            ],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq1::dequantize::<Iq1M>(src, dst)
}

/// ggml's `quantize_iq1_m` without an importance matrix (each value weighted by its square).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        crate::iq1_search::quantize_iq1_m(x, None, b);
    }
}

/// ggml's `quantize_iq1_m` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        crate::iq1_search::quantize_iq1_m(x, Some(w), b);
    }
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq1::vec_dot::<Iq1M>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ1_M,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(src: &[f32], dst: &mut [u8]) {
        crate::iq1::tests::fake_quantize(src, dst, BYTES, |b, d| {
            for i in 0..4 {
                let o = SCALES + 2 * i + 1;
                b[o] = (b[o] & 0x0f) | ((((d >> (4 * i)) & 0xf) as u8) << 4);
            }
        });
    }

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash iq1_m`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ1_M,
            [
                (0xc0a3_05e0_0274_c366, 0xfa65_f0ce_bf84_c2b4),
                (0xc700_56ef_0792_b9a6, 0xad35_f8c0_be41_1058),
            ],
        );
    }

    /// Without one: ggml's bytes (`GGML_QUANTIZE=1 matmul_hash iq1_m`).
    #[test]
    fn quantize_equals_ggml() {
        for ((k, m), (quant, dequant)) in [
            ((512, 32), (0x09ad_0a6f_1e36_ed17, 0xff42_11f2_2d24_f0d0)),
            ((4096, 8), (0x3c6e_a5d7_62fa_eaa6, 0xdefa_4b5c_d75b_ff11)),
        ] {
            crate::testkit::check_format_hashes(crate::GgmlType::IQ1_M, (k, m), quant, dequant);
        }
    }

    #[test]
    fn equals_ggml() {
        crate::iq1::tests::check_format::<Iq1M>(
            crate::GgmlType::IQ1_M,
            fake,
            (0x4ac0_0056_1e2f_1866, 0x70af_52fb_4c21_a615),
            [
                (1, 0x352c_a287_5132_854e),
                (3, 0xcfaf_9830_f09a_575d),
                (8, 0xe493_7999_7683_3cd3),
                (13, 0x6123_e07c_a0c4_c710),
            ],
        );
    }
}

//! IQ1_S: 1.5625 bits per weight. Super-blocks of 256 weights, 50 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..34  | one byte per group of 8: the low 8 bits of its index into [`IQ1S_GRID`] |
//! | 34..50 | a u16 per sub-block of 32: the high 3 bits of its four indices (bits 3l..3l+3), the 3-bit scale `ls3` (bits 12..15) and the sign of its delta (bit 15) |
//!
//! Weight = `d * (2 ls3 + 1) * (value ± 1/8)`. See [`crate::iq1`] for what IQ1_S and IQ1_M
//! share and the orders of their dot product.

use crate::iq1::{Sub, Ternary, IQ1S_GRID};
use crate::k_common::QK_K;
use crate::scalar::{le_f16, le_u16};

pub const BYTES: usize = 50;
const QH: usize = 34;

/// The IQ1_S layout, for [`crate::iq1`]'s generic code.
pub struct Iq1S;

impl Ternary for Iq1S {
    const BYTES: usize = BYTES;
    const S2_IN_LANES: bool = false;
    fn d(b: &[u8]) -> f32 {
        le_f16(b, 0)
    }
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let qh = le_u16(b, QH + 2 * ib) as usize;
        let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
        Sub {
            grid: std::array::from_fn(|l| {
                IQ1S_GRID[b[2 + 4 * ib + l] as usize | ((qh >> (3 * l)) & 7) << 8]
            }),
            delta_neg: [qh & 0x8000 != 0; 4],
            ls: [ls, ls],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq1::dequantize::<Iq1S>(src, dst)
}

/// ggml's `quantize_iq1_s`, which needs an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        crate::iq1_search::quantize_iq1_s(x, w, b);
    }
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq1::vec_dot::<Iq1S>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ1_S,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: None,
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(src: &[f32], dst: &mut [u8]) {
        crate::iq1::tests::fake_quantize(src, dst, BYTES, |b, d| {
            b[..2].copy_from_slice(&d.to_le_bytes())
        });
    }

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash iq1_s`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ1_S,
            [
                (0xbefd_acb1_fa33_1a26, 0xede7_27ef_c504_e27d),
                (0x4d3b_640f_d05c_c460, 0x7626_754d_d4a6_f195),
            ],
        );
    }

    #[test]
    fn equals_ggml() {
        crate::iq1::tests::check_format::<Iq1S>(
            crate::GgmlType::IQ1_S,
            fake,
            (0x2a03_0905_57ac_6a1f, 0x3e09_b664_7489_a1d5),
            [
                (1, 0x04d7_c2d2_d9f5_9333),
                (3, 0x0c5f_c70b_0ca3_8140),
                (8, 0xaf2e_3830_fd59_7511),
                (13, 0x0797_2665_b8a8_6b0b),
            ],
        );
    }
}

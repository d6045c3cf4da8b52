//! IQ2_S: 2.5625 bits per weight. Super-blocks of 256 weights, 82 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..34  | one byte per group of 8: the low 8 bits of its index into [`IQ2S_GRID`] |
//! | 34..66 | one byte per group of 8: its signs (bit j: value j negative) |
//! | 66..74 | one byte per sub-block of 32: the high 2 bits of its four indices (bits 2l..2l+2) |
//! | 74..82 | one byte per sub-block: the 4-bit scales of its two halves (low nibble first) |
//!
//! Weight = `d * (2 ls4 + 1) / 8 * (±grid value)`. See [`crate::iq_grid`].

use crate::iq_grid::{Lattice, Sub, IQ2S_GRID};

pub const BYTES: usize = 82;
const SIGNS: usize = 34;
const QH: usize = 66;
const SCALES: usize = 74;

/// The IQ2_S layout, for [`crate::iq_grid`]'s generic code.
pub struct Iq2S;

impl Lattice for Iq2S {
    const BYTES: usize = BYTES;
    const FACTOR: f32 = 0.125;
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let qh = b[QH + ib] as usize;
        let sc = b[SCALES + ib] as i32;
        Sub {
            grid: std::array::from_fn(|l| {
                IQ2S_GRID[b[2 + 4 * ib + l] as usize | ((qh << (8 - 2 * l)) & 0x300)]
            }),
            signs: std::array::from_fn(|l| b[SIGNS + 4 * ib + l]),
            ls: [2 * (sc & 0xf) + 1, 2 * (sc >> 4) + 1],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq_grid::dequantize::<Iq2S>(src, dst)
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq_grid::vec_dot::<Iq2S>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ2_S,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: None,
    quantize_weighted: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_ggml() {
        crate::iq_grid::tests::check_format::<Iq2S>(
            crate::GgmlType::IQ2_S,
            (0xd585_6138_50c0_bed9, 0xad38_d110_ffdb_4002),
            [
                (1, 0x019d_a9ff_105d_f7a9),
                (3, 0xe13f_1804_dde2_a925),
                (8, 0x5755_13f3_72f6_c051),
                (13, 0x3d0f_216f_0c67_cae2),
            ],
        );
    }
}

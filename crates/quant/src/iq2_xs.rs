//! IQ2_XS: 2.3125 bits per weight. Super-blocks of 256 weights, 74 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..66  | one u16 per group of 8: a 9-bit index into [`IQ2XS_GRID`], a 7-bit sign code (through [`KSIGNS`]) |
//! | 66..74 | one byte per sub-block of 32: the 4-bit scales of its two halves (low nibble first) |
//!
//! Weight = `d * (2 ls4 + 1) / 8 * (±grid value)`. See [`crate::iq_grid`].

use crate::iq_grid::{Lattice, Sub, IQ2XS_GRID, KSIGNS};
use crate::scalar::le_u16;

pub const BYTES: usize = 74;
const SCALES: usize = 66;

/// The IQ2_XS layout, for [`crate::iq_grid`]'s generic code.
pub struct Iq2Xs;

impl Lattice for Iq2Xs {
    const BYTES: usize = BYTES;
    const FACTOR: f32 = 0.125;
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let q: [u16; 4] = std::array::from_fn(|l| le_u16(b, 2 + 2 * (4 * ib + l)));
        let sc = b[SCALES + ib] as i32;
        Sub {
            grid: q.map(|q| IQ2XS_GRID[(q & 511) as usize]),
            signs: q.map(|q| KSIGNS[(q >> 9) as usize]),
            ls: [2 * (sc & 0xf) + 1, 2 * (sc >> 4) + 1],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq_grid::dequantize::<Iq2Xs>(src, dst)
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq_grid::vec_dot::<Iq2Xs>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ2_XS,
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
        crate::iq_grid::tests::check_format::<Iq2Xs>(
            crate::GgmlType::IQ2_XS,
            (0xc583_7340_c158_6174, 0x7a7e_c202_f434_2571),
            [
                (1, 0x3390_ab29_21b1_9839),
                (3, 0x2e80_9877_40e1_3820),
                (8, 0x5f2f_a016_ac9e_7122),
                (13, 0xcb56_3dec_dcc4_414a),
            ],
        );
    }
}

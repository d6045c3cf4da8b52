//! IQ3_XXS: 3.0625 bits per weight. Super-blocks of 256 weights, 98 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..66  | one byte per 4 weights: an index into [`IQ3XXS_GRID`] |
//! | 66..98 | a u32 per sub-block of 32: four 7-bit sign codes (bits 7l..7l+7, through [`KSIGNS`]) and the 4-bit scale `ls4` in bits 28..32 |
//!
//! Weight = `d * (2 ls4 + 1) / 4 * (±grid value)`. See [`crate::iq_grid`].

use crate::iq_grid::{Lattice, Sub, IQ3XXS_GRID, KSIGNS};
use crate::scalar::le_u16;

pub const BYTES: usize = 98;
const SCALES_SIGNS: usize = 66;

/// The IQ3_XXS layout, for [`crate::iq_grid`]'s generic code.
pub struct Iq3Xxs;

impl Lattice for Iq3Xxs {
    const BYTES: usize = BYTES;
    const FACTOR: f32 = 0.25;
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let o = SCALES_SIGNS + 4 * ib;
        let sg = le_u16(b, o) as u32 | (le_u16(b, o + 2) as u32) << 16;
        let ls = 2 * (sg >> 28) as i32 + 1;
        let q = &b[2 + 8 * ib..2 + 8 * ib + 8];
        Sub {
            grid: std::array::from_fn(|l| {
                IQ3XXS_GRID[q[2 * l] as usize] as u64
                    | (IQ3XXS_GRID[q[2 * l + 1] as usize] as u64) << 32
            }),
            signs: std::array::from_fn(|l| KSIGNS[(sg >> (7 * l)) as usize & 127]),
            ls: [ls, ls],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq_grid::dequantize::<Iq3Xxs>(src, dst)
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq_grid::vec_dot::<Iq3Xxs>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ3_XXS,
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
        crate::iq_grid::tests::check_format::<Iq3Xxs>(
            crate::GgmlType::IQ3_XXS,
            (0x1657_ea37_e67d_ec46, 0xf712_7d62_94fd_fddf),
            [
                (1, 0xa364_9ffd_051f_6988),
                (3, 0x5167_bc58_26a9_e402),
                (8, 0xa75c_53bb_b11b_ac5a),
                (13, 0x994e_a7cf_e4fe_402b),
            ],
        );
    }
}

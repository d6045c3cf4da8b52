//! IQ2_XXS: 2.0625 bits per weight. Super-blocks of 256 weights, 66 bytes each:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..2  | `d`: f16 super-block scale |
//! | 2..66 | 8 bytes per sub-block of 32: four grid indices (one byte each, into [`IQ2XXS_GRID`]), then a u32 with four 7-bit sign codes (bits 7l..7l+7, through [`KSIGNS`]) and the 4-bit scale `ls4` in bits 28..32 |
//!
//! Weight = `d * (2 ls4 + 1) / 8 * (±grid value)`. See [`crate::iq_grid`] for what the lattice
//! formats share (the orders of the dot product among them).

use crate::iq_grid::{Lattice, Sub, IQ2XXS_GRID, KSIGNS};
use crate::scalar::le_u16;

pub const BYTES: usize = 66;

/// The IQ2_XXS layout, for [`crate::iq_grid`]'s generic code.
pub struct Iq2Xxs;

fn le_u32(b: &[u8], o: usize) -> u32 {
    le_u16(b, o) as u32 | (le_u16(b, o + 2) as u32) << 16
}

impl Lattice for Iq2Xxs {
    const BYTES: usize = BYTES;
    const FACTOR: f32 = 0.125;
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let (idx, sg) = (le_u32(b, 2 + 8 * ib), le_u32(b, 6 + 8 * ib));
        let ls = 2 * (sg >> 28) as i32 + 1;
        Sub {
            grid: std::array::from_fn(|l| IQ2XXS_GRID[(idx >> (8 * l)) as usize & 0xff]),
            signs: std::array::from_fn(|l| KSIGNS[(sg >> (7 * l)) as usize & 127]),
            ls: [ls, ls],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq_grid::dequantize::<Iq2Xxs>(src, dst)
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq_grid::vec_dot::<Iq2Xxs>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ2_XXS,
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
        crate::iq_grid::tests::check_format::<Iq2Xxs>(
            crate::GgmlType::IQ2_XXS,
            (0x2e15_d213_f87d_1456, 0x020c_2476_56d1_25f8),
            [
                (1, 0xee75_de58_a310_3f4a),
                (3, 0x17b9_5d33_2fe6_9678),
                (8, 0x73df_a968_407d_c282),
                (13, 0x59a6_fc7e_4d1b_fd1e),
            ],
        );
    }
}

//! IQ3_S: 3.4375 bits per weight. Super-blocks of 256 weights, 110 bytes each:
//!
//! | bytes    | field |
//! |----------|-------|
//! | 0..2     | `d`: f16 super-block scale |
//! | 2..66    | one byte per 4 weights: the low 8 bits of an index into [`IQ3S_GRID`] |
//! | 66..74   | one byte per sub-block of 32: the 9th bit of its 8 indices |
//! | 74..106  | one byte per group of 8: its signs (bit j: value j negative) |
//! | 106..110 | one byte per two sub-blocks: their 4-bit scales (low nibble first) |
//!
//! Weight = `d * (2 ls4 + 1) * (±grid value)`. See [`crate::iq_grid`].

use crate::iq_grid::{Lattice, Sub, IQ3S_GRID};

pub const BYTES: usize = 110;
const QH: usize = 66;
const SIGNS: usize = 74;
const SCALES: usize = 106;

/// The IQ3_S layout, for [`crate::iq_grid`]'s generic code.
pub struct Iq3S;

impl Lattice for Iq3S {
    const BYTES: usize = BYTES;
    const FACTOR: f32 = 1.0;
    #[inline]
    fn sub(b: &[u8], ib: usize) -> Sub {
        let qh = b[QH + ib] as usize;
        let q = &b[2 + 8 * ib..2 + 8 * ib + 8];
        let ls = 2 * ((b[SCALES + ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 + 1;
        Sub {
            grid: std::array::from_fn(|l| {
                let lo = q[2 * l] as usize | ((qh << (8 - 2 * l)) & 256);
                let hi = q[2 * l + 1] as usize | ((qh << (7 - 2 * l)) & 256);
                IQ3S_GRID[lo] as u64 | (IQ3S_GRID[hi] as u64) << 32
            }),
            signs: std::array::from_fn(|l| b[SIGNS + 4 * ib + l]),
            ls: [ls, ls],
        }
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    crate::iq_grid::dequantize::<Iq3S>(src, dst)
}

/// Dot with a Q8_K row in ggml's portable order.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    crate::iq_grid::vec_dot::<Iq3S>(n, w, x)
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ3_S,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_ggml() {
        crate::iq_grid::tests::check_format::<Iq3S>(
            crate::GgmlType::IQ3_S,
            (0xc137_57e7_f843_b701, 0x537a_7ea5_c4d5_6262),
            [
                (1, 0xfb53_081d_1692_20f7),
                (3, 0x88cd_f62c_3d25_aefb),
                (8, 0x9702_6803_859f_b59e),
                (13, 0x90c5_1c45_ceea_d00b),
            ],
        );
    }
}

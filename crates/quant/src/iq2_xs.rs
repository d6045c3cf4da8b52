//! IQ2_XS: 2.3125 bits per weight. Super-blocks of 256 weights, 74 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..66  | one u16 per group of 8: a 9-bit index into [`IQ2XS_GRID`], a 7-bit sign code (through [`KSIGNS`]) |
//! | 66..74 | one byte per sub-block of 32: the 4-bit scales of its two halves (low nibble first) |
//!
//! Weight = `d * (2 ls4 + 1) / 8 * (±grid value)`. See [`crate::iq_grid`].

use std::sync::OnceLock;

use crate::iq2_search::{even_signs, fit_pair, grid_levels, GridMap};
use crate::iq_grid::{Lattice, Sub, IQ2XS_GRID, KSIGNS};
use crate::k_common::{nearest_int, GROUP_MAX_EPS, QK_K};
use crate::scalar::le_u16;
use crate::scalar::{c_max, f32_to_fp16};

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

/// ggml's `quantize_iq2_xs`, which needs an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        quantize_block(x, w, b);
    }
}

/// The grid for the search (ggml's `iq2xs_init_impl`): values 8, 25, 43 are levels 0, 1, 2.
fn grid_map() -> &'static GridMap {
    static MAP: OnceLock<GridMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let levels = grid_levels(&IQ2XS_GRID);
        GridMap::new(levels, 2)
    })
}

/// ggml's `quantize_row_iq2_xs_impl` for one super-block (16 groups of 16, each two grid
/// entries under one scale).
fn quantize_block(xbl: &[f32], qw: &[f32], b: &mut [u8]) {
    let gm = grid_map();
    b.fill(0);
    let mut q2 = [0u16; 32];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    for ib in 0..16 {
        let xb = &xbl[16 * ib..16 * ib + 16];
        let weight: [f32; 16] =
            std::array::from_fn(|i| qw[16 * ib + i] * (sigma2 + xb[i] * xb[i]).sqrt());
        let waux: [f32; 16] = std::array::from_fn(|i| weight[i].sqrt());
        let mut xval = [0f32; 16];
        let mut signs = [0u8; 2];
        even_signs(xb, &weight, &mut xval, &mut signs);
        let mut max = xval[0];
        for &v in &xval[1..] {
            max = c_max(max, v);
        }
        let mut l = [0i8; 16];
        if max < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut scale = fit_pair(gm, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs = signs.map(|s| !s & 127);
        }
        for k in 0..2 {
            let Ok(j) = gm.lookup(&l[8 * k..8 * k + 8]) else {
                unreachable!("IQ2_XS search left a point off the grid")
            };
            q2[2 * ib + k] = *j | (signs[k] as u16) << 9;
        }
        scales[ib] = scale;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    b[..2].copy_from_slice(&f32_to_fp16(d).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..16 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15) as u8;
        b[SCALES + ib / 2] |= l << (4 * (ib % 2));
    }
    for (i, v) in q2.iter().enumerate() {
        b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
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
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash iq2_xs`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ2_XS,
            [
                (0x5fba_472c_5857_dfd8, 0x75c1_c297_8f77_7ea5),
                (0xdd8a_e7f3_5d6f_b829, 0xbfbf_21e9_4c19_89bc),
            ],
        );
    }

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

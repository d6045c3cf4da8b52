//! IQ3_XXS: 3.0625 bits per weight. Super-blocks of 256 weights, 98 bytes each:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..2   | `d`: f16 super-block scale |
//! | 2..66  | one byte per 4 weights: an index into [`IQ3XXS_GRID`] |
//! | 66..98 | a u32 per sub-block of 32: four 7-bit sign codes (bits 7l..7l+7, through [`KSIGNS`]) and the 4-bit scale `ls4` in bits 28..32 |
//!
//! Weight = `d * (2 ls4 + 1) / 4 * (±grid value)`. See [`crate::iq_grid`].

use std::sync::OnceLock;

use crate::iq3_search::{fit, GridMap, Search};
use crate::iq_grid::{Lattice, Sub, IQ3XXS_GRID, KSIGNS};
use crate::k_common::{nearest_int, QK_K};
use crate::scalar::{c_max, f32_to_fp16, le_u16};

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

/// IQ3_XXS's grid for the search (ggml's `iq3xs_init_impl(256)`): levels `(value - 4) / 8`.
fn grid_map() -> &'static GridMap {
    static MAP: OnceLock<GridMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let levels = IQ3XXS_GRID
            .iter()
            .map(|&g| std::array::from_fn(|i| (((g >> (8 * i)) & 0xff) as i32 - 4) / 8))
            .collect();
        GridMap::new(levels, 2)
    })
}

/// ggml's `quantize_iq3_xxs` without an importance matrix (`quantize_row_iq3_xxs_ref`).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        quantize_block(x, None, b);
    }
}

/// ggml's `quantize_iq3_xxs` with an importance matrix (`qw`: one weight per element). ggml
/// itself does not insist on one, but llama-quantize does for IQ3_XXS tensors.
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        quantize_block(x, Some(w), b);
    }
}

/// ggml's `quantize_row_iq3_xxs_impl` for one super-block. Signs are stored 7 per group, so
/// a group with an odd number of negative values gives up the sign of its least important one.
fn quantize_block(xbl: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    const SEARCH: Search = Search {
        steps: 15,
        start_on_grid: true,
        refit_only_off_grid: true,
    };
    let gm = grid_map();
    b.fill(0);
    let mut scales = [0f32; 8];
    let mut signs_scales = [0u32; 8];
    let mut max_scale = 0f32;
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    for ib in 0..8 {
        let xb = &xbl[32 * ib..32 * ib + 32];
        let weight: [f32; 32] = std::array::from_fn(|i| match qw {
            Some(q) => q[32 * ib + i] * (sigma2 + xb[i] * xb[i]).sqrt(),
            None => xb[i] * xb[i],
        });
        let mut xval = [0f32; 32];
        let mut block_signs = [0u8; 4];
        for k in 0..4 {
            let (mut nflip, mut sg) = (0, 0u8);
            for i in 0..8 {
                let v = xb[8 * k + i];
                if v >= 0.0 {
                    xval[8 * k + i] = v;
                } else {
                    xval[8 * k + i] = -v;
                    nflip += 1;
                    sg |= 1 << i;
                }
            }
            if nflip % 2 == 1 {
                let mut imin = 0;
                let mut min = weight[8 * k] * xb[8 * k] * xb[8 * k];
                for i in 1..8 {
                    let ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if ax < min {
                        min = ax;
                        imin = i;
                    }
                }
                xval[8 * k + imin] = -xval[8 * k + imin];
                sg ^= 1 << imin;
            }
            block_signs[k] = sg & 127;
        }
        let mut max = xval[0];
        for &v in &xval[1..] {
            max = c_max(max, v);
        }
        if max < 1e-8 {
            scales[ib] = 0.0;
            continue;
        }
        let mut l = [0i8; 32];
        let mut scale = fit(gm, &SEARCH, &xval, &weight, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            block_signs = block_signs.map(|s| !s & 127);
        }
        for k in 0..8 {
            let j = gm
                .entry(&l[4 * k..4 * k + 4])
                .expect("IQ3_XXS search left a point off the grid");
            b[2 + 8 * ib + k] = j as u8;
        }
        signs_scales[ib] = block_signs[0] as u32
            | (block_signs[1] as u32) << 7
            | (block_signs[2] as u32) << 14
            | (block_signs[3] as u32) << 21;
        scales[ib] = scale;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        b.fill(0);
        return;
    }
    let d = max_scale / 31.0;
    b[..2].copy_from_slice(&f32_to_fp16(d * 1.0125).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..8 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15) as u32;
        let v = signs_scales[ib] | l << 28;
        b[SCALES_SIGNS + 4 * ib..SCALES_SIGNS + 4 * ib + 4].copy_from_slice(&v.to_le_bytes());
    }
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
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash iq3_xxs`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ3_XXS,
            [
                (0x5d2f_4ca7_279e_f596, 0x77b5_2eec_ff4d_358c),
                (0xe8e2_e21b_c076_bcc7, 0x57c5_2cc5_1711_7f64),
            ],
        );
    }

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

//! IQ2_XXS: 2.0625 bits per weight. Super-blocks of 256 weights, 66 bytes each:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..2  | `d`: f16 super-block scale |
//! | 2..66 | 8 bytes per sub-block of 32: four grid indices (one byte each, into [`IQ2XXS_GRID`]), then a u32 with four 7-bit sign codes (bits 7l..7l+7, through [`KSIGNS`]) and the 4-bit scale `ls4` in bits 28..32 |
//!
//! Weight = `d * (2 ls4 + 1) / 8 * (±grid value)`. See [`crate::iq_grid`] for what the lattice
//! formats share (the orders of the dot product among them).

use std::sync::OnceLock;

use crate::iq2_search::{even_signs, fit_sums, grid_levels, round_group, GridMap};
use crate::iq_grid::{Lattice, Sub, IQ2XXS_GRID, KSIGNS};
use crate::k_common::{make_qp_quants, nearest_int, GROUP_MAX_EPS, QK_K};
use crate::scalar::le_u16;
use crate::scalar::{c_max, f32_to_fp16};

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

/// ggml's `quantize_iq2_xxs`, which needs an importance matrix (`qw`: one weight per element).
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
        let levels = grid_levels(&IQ2XXS_GRID);
        GridMap::new(levels, 2)
    })
}

/// ggml's `quantize_row_iq2_xxs_impl` for one super-block.
fn quantize_block(xbl: &[f32], qw: &[f32], b: &mut [u8]) {
    let gm = grid_map();
    b.fill(0);
    let mut q2 = [0u32; 16];
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    for ib in 0..8 {
        let xb = &xbl[32 * ib..32 * ib + 32];
        let weight: [f32; 32] =
            std::array::from_fn(|i| qw[32 * ib + i] * (sigma2 + xb[i] * xb[i]).sqrt());
        let waux: [f32; 32] = std::array::from_fn(|i| weight[i].sqrt());
        let mut xval = [0f32; 32];
        let mut signs = [0u8; 4];
        even_signs(xb, &weight, &mut xval, &mut signs);
        let mut max = xval[0];
        for &v in &xval[1..] {
            max = c_max(max, v);
        }
        if max < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut lq = [0u8; 32];
        let mut scale = make_qp_quants(4, &xval, &mut lq, &weight);
        let mut l: [i8; 32] = lq.map(|v| v as i8);
        let eff_max = scale * 3.0;
        if eff_max <= 0.0 {
            scales[ib] = 0.0;
            continue;
        }
        let mut best = 0f32;
        let mut laux = [0i8; 32];
        for is in -6..=6 {
            let id = (5.0 + is as f32 * 0.1) / eff_max;
            let this_scale = 1.0 / id;
            for k in 0..4 {
                let g = 8 * k..8 * k + 8;
                round_group(&xval[g.clone()], id, &mut laux[g.clone()]);
                if let Err(c) = gm.lookup(&laux[g.clone()]) {
                    gm.best_neighbour(
                        c,
                        &xval[g.clone()],
                        &waux[g.clone()],
                        this_scale,
                        &mut laux[g],
                    );
                }
            }
            let (sumqx, sumq2) = fit_sums(&weight, &xval, &laux);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                l = laux;
            }
        }
        if scale > 0.0 {
            let id = 1.0 / scale;
            for k in 0..4 {
                let g = 8 * k..8 * k + 8;
                let mut q = [0i8; 8];
                round_group(&xval[g.clone()], id, &mut q);
                let j = match gm.lookup(&q) {
                    Ok(j) => *j,
                    Err(c) => gm.best_neighbour(
                        c,
                        &xval[g.clone()],
                        &waux[g.clone()],
                        scale,
                        &mut l[g.clone()],
                    ),
                };
                for (d, v) in l[g].iter_mut().zip(gm.levels(j)) {
                    *d = v as i8;
                }
            }
            let (sumqx, sumq2) = fit_sums(&weight, &xval, &l);
            if sumq2 > 0.0 {
                scale = sumqx / sumq2;
            }
        }
        if scale < 0.0 {
            scale = -scale;
            signs = signs.map(|s| !s & 127);
        }
        for k in 0..4 {
            let Ok(j) = gm.lookup(&l[8 * k..8 * k + 8]) else {
                unreachable!("IQ2_XXS search left a point off the grid")
            };
            q2[2 * ib] |= (*j as u32) << (8 * k);
            q2[2 * ib + 1] |= (signs[k] as u32) << (7 * k);
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
    for ib in 0..8 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15) as u32;
        q2[2 * ib + 1] |= l << 28;
    }
    for (i, v) in q2.iter().enumerate() {
        b[2 + 4 * i..6 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
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
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash iq2_xxs`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ2_XXS,
            [
                (0xa507_3c1b_41db_c6ff, 0x8ce7_ea29_178b_32a6),
                (0x6892_7a09_5390_2fd2, 0x6f43_e47b_fb35_3230),
            ],
        );
    }

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

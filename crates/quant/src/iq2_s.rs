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

use std::sync::OnceLock;

use crate::iq2_search::{fit_pair, grid_levels, GridMap};
use crate::iq_grid::{Lattice, Sub, IQ2S_GRID};
use crate::k_common::{nearest_int, QK_K};
use crate::scalar::{c_max, f32_to_fp16};

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

/// ggml's `quantize_iq2_s` without an importance matrix (llama-quantize insists on one for
/// IQ2_S tensors, but ggml quantizes without).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        quantize_block(x, None, b);
    }
}

/// ggml's `quantize_iq2_s` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        quantize_block(x, Some(w), b);
    }
}

/// The grid for the search (ggml's `iq2xs_init_impl` for IQ2_S: only the nearest entries are
/// candidates).
fn grid_map() -> &'static GridMap {
    static MAP: OnceLock<GridMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let levels = grid_levels(&IQ2S_GRID);
        GridMap::new(levels, 1)
    })
}

/// ggml's `quantize_row_iq2_s_impl` for one super-block: like IQ2_XS's (16 groups of 16),
/// but every sign stored (no parity trick), 10-bit grid indices and a 0.9875 fudge on `d`.
fn quantize_block(xbl: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    let gm = grid_map();
    b.fill(0);
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    for ib in 0..16 {
        let xb = &xbl[16 * ib..16 * ib + 16];
        let weight: [f32; 16] = std::array::from_fn(|i| match qw {
            Some(q) => q[16 * ib + i] * (sigma2 + xb[i] * xb[i]).sqrt(),
            None => 0.25 * sigma2 + xb[i] * xb[i],
        });
        let waux: [f32; 16] = std::array::from_fn(|i| weight[i].sqrt());
        let mut xval = [0f32; 16];
        let mut signs = [0u8; 2];
        for (k, sg) in signs.iter_mut().enumerate() {
            for i in 0..8 {
                let v = xb[8 * k + i];
                if v >= 0.0 {
                    xval[8 * k + i] = v;
                } else {
                    xval[8 * k + i] = -v;
                    *sg |= 1 << i;
                }
            }
        }
        let mut max = xval[0];
        for &v in &xval[1..] {
            max = c_max(max, v);
        }
        let mut l = [0i8; 16];
        if max < 1e-8 {
            scales[ib] = 0.0;
            continue;
        }
        let mut scale = fit_pair(gm, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            signs = signs.map(|s| !s);
        }
        for k in 0..2 {
            let Ok(j) = gm.lookup(&l[8 * k..8 * k + 8]) else {
                unreachable!("IQ2_S search left a point off the grid")
            };
            let i8 = 2 * ib + k;
            b[2 + i8] = *j as u8;
            b[QH + i8 / 4] |= ((*j >> 8) << (2 * (i8 % 4))) as u8;
            b[SIGNS + i8] = signs[k];
        }
        scales[ib] = scale;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    b[..2].copy_from_slice(&f32_to_fp16(d * 0.9875).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..16 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15) as u8;
        b[SCALES + ib / 2] |= l << (4 * (ib % 2));
    }
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
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's bytes with an importance matrix and without (`GGML_QW=1` /
    /// `GGML_QUANTIZE=1 matmul_hash iq2_s`).
    #[test]
    fn quantize_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::IQ2_S,
            [
                (0x1021_8308_d373_5c5b, 0xeb27_494c_5c8d_bc7c),
                (0xd788_2ed6_cb03_92ab, 0xf44c_672e_72f0_d997),
            ],
        );
        for (k, m, quant, dequant) in [
            (512, 32, 0x82dc_d4c4_cce7_3fbe, 0x2d75_de64_4c08_6c70),
            (4096, 8, 0x68c9_04d6_72c4_23b4, 0x4b6e_011d_8be3_a17d),
        ] {
            crate::testkit::check_format_hashes(crate::GgmlType::IQ2_S, (k, m), quant, dequant);
        }
    }

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

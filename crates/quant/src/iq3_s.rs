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

use std::sync::OnceLock;

use crate::iq3_search::{fit, GridMap, Search};
use crate::iq_grid::{Lattice, Sub, IQ3S_GRID};
use crate::k_common::{nearest_int, QK_K};
use crate::scalar::{c_max, f32_to_fp16};

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

/// ggml's `quantize_iq3_s` without an importance matrix (what llama-quantize does for IQ3_S
/// files made without one), byte for byte.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        quantize_block(x, None, b);
    }
}

/// ggml's `quantize_iq3_s` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        quantize_block(x, Some(w), b);
    }
}

/// IQ3_S's grid for the search (ggml's `iq3xs_init_impl(512)`).
fn grid_map() -> &'static GridMap {
    static MAP: OnceLock<GridMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let levels = IQ3S_GRID
            .iter()
            .map(|&g| std::array::from_fn(|i| (((g >> (8 * i)) & 0xff) as i32 - 1) / 2))
            .collect();
        GridMap::new(levels, 3)
    })
}

/// ggml's `quantize_row_iq3_s_impl` for one super-block, with optional importance weights
/// (`qw`, 256 of them). Operand order and f32 precision follow the C source (built without
/// FMA); so do its quirks, e.g. an all-zero sub-block does not advance the `qs`/`signs`
/// cursors, so the next sub-block's codes land in its place.
pub(crate) fn quantize_block(xbl: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    const SEARCH: Search = Search {
        steps: 9,
        start_on_grid: false,
        refit_only_off_grid: false,
    };
    let gm = grid_map();
    b.fill(0);
    let (mut qs, mut signs_at) = (2usize, SIGNS);
    let mut scales = [0f32; 8];
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
            for i in 0..8 {
                let v = xb[8 * k + i];
                if v >= 0.0 {
                    xval[8 * k + i] = v;
                } else {
                    xval[8 * k + i] = -v;
                    block_signs[k] |= 1 << i;
                }
            }
        }
        let mut max = xval[0];
        for &v in &xval[1..] {
            max = c_max(max, v);
        }
        if max == 0.0 {
            scales[ib] = 0.0;
            continue;
        }
        let mut l = [0i8; 32];
        let mut scale = fit(gm, &SEARCH, &xval, &weight, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            block_signs = block_signs.map(|s| !s);
        }
        for k in 0..8 {
            let j = gm
                .entry(&l[4 * k..4 * k + 4])
                .expect("IQ3_S search left a point off the grid");
            b[qs + k] = j as u8;
            b[QH + ib] |= ((j >> 8) << k) as u8;
        }
        qs += 8;
        b[signs_at..signs_at + 4].copy_from_slice(&block_signs);
        signs_at += 4;
        scales[ib] = scale;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    b[..2].copy_from_slice(&f32_to_fp16(d * 1.033).to_le_bytes());
    let id = 1.0 / d;
    for ib in (0..8).step_by(2) {
        let l1 = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 15);
        let l2 = nearest_int(0.5 * (id * scales[ib + 1] - 1.0)).clamp(0, 15);
        b[SCALES + ib / 2] = (l1 | (l2 << 4)) as u8;
    }
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
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's quantizer on `matmul_hash.c`'s weights (`GGML_QUANTIZE=1 matmul_hash iq3_s K M 1
    /// plain 1 detail`): the same bytes, and they dequantize to the same floats.
    #[test]
    fn quantize_equals_ggml() {
        for (k, m, quant, dequant) in [
            (512, 32, 0xa525_e5b0_5b0d_81ca, 0x19fb_cd71_d51a_94b6),
            (4096, 16, 0x0a4e_d0f6_717c_2ac2, 0xb6c4_52e8_0358_be86),
            (256, 64, 0xef9b_622a_1539_59ae, 0xdc7f_8a67_9642_ed4b),
        ] {
            crate::testkit::check_format_hashes(crate::GgmlType::IQ3_S, (k, m), quant, dequant);
        }
    }

    /// With an importance matrix (`GGML_QW=1 matmul_hash iq3_s K M 1 plain 1 detail`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        for (k, m, quant, dequant) in [
            (512, 32, 0xd4f9_f578_7957_700e, 0xfe58_4e5e_2e26_dc2a),
            (4096, 8, 0xcf75_72f3_7a7a_9a33, 0x9aaa_c1b9_a066_e6d0),
        ] {
            crate::testkit::check_weighted_hashes(crate::GgmlType::IQ3_S, (k, m), quant, dequant);
        }
    }

    /// llama.cpp's test-quantize-fns thresholds for IQ3_S (3-bit total error, low-bit dot).
    #[test]
    fn test_quantize_fns_thresholds() {
        crate::testkit::check_quantize_fns_sized(
            "IQ3_S",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_k::quantize,
            4096 / QK_K * crate::q8_k::BLOCK_BYTES,
        );
    }

    /// The grid map: every entry found by its own levels, and points off the grid get
    /// candidates from the grid.
    #[test]
    fn grid_map_is_ggmls() {
        let gm = grid_map();
        for (j, &g) in IQ3S_GRID.iter().enumerate() {
            let l: [i8; 4] = std::array::from_fn(|i| (((g >> (8 * i)) & 0xff) as i8 - 1) / 2);
            assert_eq!(gm.entry(&l), Some(j as u16));
        }
        let off = (0..4096u16)
            .filter(|u| {
                let l: [i8; 4] = std::array::from_fn(|i| ((u >> (3 * i)) & 7) as i8);
                gm.entry(&l).is_none()
            })
            .count();
        assert_eq!(off, 4096 - 512);
    }

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

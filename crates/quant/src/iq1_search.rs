//! The quantizers of IQ1_S and IQ1_M (ggml's `quantize_row_iq1_s_impl` and
//! `quantize_row_iq1_m_impl`), byte for byte. A block (IQ1_S: 32 weights, IQ1_M: 16) is split
//! into the three values -1, 0, 1 exactly: with the values sorted, every pair of boundaries
//! is scored from prefix sums, each with the shift `+1/8` and `-1/8` (IQ1_M: a shift per group
//! of 8). Groups of 8 whose levels are not an entry of [`IQ1S_GRID`] are replaced by their best
//! neighbour (ggml's `iq2xs_init_impl` map with 3 distances, [`GridMap`]) and the scale is
//! refitted. Float operations keep ggml's operand order (ggml-base is built without FMA).

use std::sync::OnceLock;

use crate::iq1::IQ1S_GRID;
use crate::iq2_search::GridMap;
use crate::k_common::{nearest_int, QK_K};
use crate::scalar::{c_max, f32_to_fp16};

const DELTA: f32 = 0.125;
/// The three values with a positive and with a negative shift.
const X_P: [f32; 3] = [-1.0 + DELTA, DELTA, 1.0 + DELTA];
const X_M: [f32; 3] = [-1.0 - DELTA, -DELTA, 1.0 - DELTA];

/// The IQ1 grid for the search: value -1, 0, 1 is level 0, 1, 2.
fn grid_map() -> &'static GridMap {
    static MAP: OnceLock<GridMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let levels = IQ1S_GRID
            .iter()
            .map(|&g| std::array::from_fn(|i| (g >> (8 * i)) as u8 as i8 as i32 + 1))
            .collect();
        GridMap::new(levels, 3)
    })
}

/// ggml's `iq1_find_best_neighbour2`: the candidate closest to `x` at `scale` in weighted
/// squared error, values from `xx` (first on ties). Returns its index; its levels go to `l`.
fn best_neighbour(
    gm: &GridMap,
    cands: &[u16],
    x: &[f32],
    w: &[f32],
    scale: f32,
    xx: &[f32; 3],
    l: &mut [i8],
) -> u16 {
    let mut best = (f32::MAX, None);
    for &j in cands {
        let pg = gm.levels(j);
        let mut d2 = 0f32;
        for i in 0..8 {
            let diff = scale * xx[pg[i] as usize] - x[i];
            d2 += w[i] * diff * diff;
        }
        if d2 < best.0 {
            best = (d2, Some(j));
        }
    }
    // Only non-finite errors leave no candidate; ggml then scans the whole grid with an
    // out-of-bounds read and asserts. Taking the nearest entry keeps the output valid.
    let j = best.1.unwrap_or(cands[0]);
    for (d, v) in l.iter_mut().zip(gm.levels(j)) {
        *d = v as i8;
    }
    j
}

/// The order ggml's `qsort` puts a block's values in: ascending, equal values in their
/// original order (glibc's qsort is a merge sort for arrays this small, so it is stable).
fn sorted_order<const N: usize>(xb: &[f32]) -> [usize; N] {
    let mut idx: [usize; N] = std::array::from_fn(|i| i);
    idx.sort_by(|&a, &b| {
        xb[a]
            .partial_cmp(&xb[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx
}

/// Levels from the best split: sorted positions below `i1` get 0, below `i2` 1, the rest 2.
fn split_levels<const N: usize>(idx: &[usize; N], i1: usize, i2: usize) -> [i8; N] {
    let mut l = [0i8; N];
    for (j, &i) in idx.iter().enumerate() {
        l[i] = if j < i1 {
            0
        } else if j < i2 {
            1
        } else {
            2
        };
    }
    l
}

/// Puts every group of 8 of `l` on the grid (replacing it by its best neighbour if it is
/// not), with the values of group `k` from `xx(k)`. Returns the entries and whether all
/// groups were on the grid already.
fn on_grid<const G: usize>(
    xb: &[f32],
    weight: &[f32],
    scale: f32,
    xx: impl Fn(usize) -> &'static [f32; 3],
    l: &mut [i8],
) -> ([u16; G], bool) {
    let gm = grid_map();
    let mut all = true;
    let index = std::array::from_fn(|k| {
        let g = 8 * k..8 * k + 8;
        match gm.lookup(&l[g.clone()]) {
            Ok(j) => *j,
            Err(c) => {
                all = false;
                let (x, w) = (&xb[g.clone()], &weight[g.clone()]);
                best_neighbour(gm, c, x, w, scale, xx(k), &mut l[g])
            }
        }
    });
    (index, all)
}

/// The least-squares scale of grid entries `index` (group `k` valued from `xx(k)`, times
/// `mul`), in ggml's order: `(sum w q x, sum w q²)`.
fn grid_sums(
    xb: &[f32],
    weight: &[f32],
    index: &[u16],
    xx: impl Fn(usize) -> &'static [f32; 3],
    mul: f32,
    acc: &mut (f32, f32),
) {
    let gm = grid_map();
    for (k, &j) in index.iter().enumerate() {
        let pg = gm.levels(j);
        for i in 0..8 {
            let w = weight[8 * k + i];
            let q = xx(k)[pg[i] as usize] * mul;
            acc.0 += w * q * xb[8 * k + i];
            acc.1 += w * q * q;
        }
    }
}

fn block_weights<const N: usize>(xb: &[f32], qw: Option<&[f32]>, sigma2: f32) -> [f32; N] {
    std::array::from_fn(|i| match qw {
        Some(qw) => qw[i] * (sigma2 + xb[i] * xb[i]).sqrt(),
        None => xb[i] * xb[i],
    })
}

fn abs_max(xb: &[f32]) -> f32 {
    xb[1..].iter().fold(xb[0].abs(), |m, v| c_max(m, v.abs()))
}

fn sigma2(xbl: &[f32]) -> f32 {
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    2.0 * sumx2 / QK_K as f32
}

/// ggml's `quantize_row_iq1_s_impl` for one super-block (50 bytes).
pub(crate) fn quantize_iq1_s(xbl: &[f32], qw: &[f32], b: &mut [u8]) {
    const BS: usize = 32;
    b.fill(0);
    let (mut scales, mut shifts) = ([0f32; 8], [1i8; 8]);
    let mut qh = [0u16; 8];
    let mut max_scale = 0f32;
    let sigma2 = sigma2(xbl);
    for ib in 0..QK_K / BS {
        let xb = &xbl[BS * ib..BS * ib + BS];
        let weight: [f32; BS] = block_weights(xb, Some(&qw[BS * ib..]), sigma2);
        if abs_max(xb) < 1e-12 {
            continue;
        }
        let idx: [usize; BS] = sorted_order(xb);
        let (mut sumx, mut sumw) = ([0f32; BS + 1], [0f32; BS + 1]);
        for (j, &i) in idx.iter().enumerate() {
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        let (mut best_score, mut scale) = (-f32::MAX, abs_max(xb));
        let mut best: Option<(usize, usize, i8)> = None;
        for i1 in 0..=BS {
            for i2 in i1..=BS {
                for (xs, shift) in [(&X_P, 1), (&X_M, -1)] {
                    let sumqx = (sumx[i1] - sumx[0]) * xs[0]
                        + (sumx[i2] - sumx[i1]) * xs[1]
                        + (sumx[BS] - sumx[i2]) * xs[2];
                    let sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0]
                        + (sumw[i2] - sumw[i1]) * xs[1] * xs[1]
                        + (sumw[BS] - sumw[i2]) * xs[2] * xs[2];
                    if sumq2 > 0.0 && sumqx * sumqx > best_score * sumq2 {
                        scale = sumqx / sumq2;
                        best_score = scale * sumqx;
                        best = Some((i1, i2, shift));
                    }
                }
            }
        }
        let Some((i1, i2, mut shift)) = best else {
            continue;
        };
        let mut l = split_levels(&idx, i1, i2);
        if scale < 0.0 {
            l.iter_mut().for_each(|v| *v = 2 - *v);
            scale = -scale;
            shift = -shift;
        }
        let xx = if shift == 1 { &X_P } else { &X_M };
        let (index, all) = on_grid::<4>(xb, &weight, scale, |_| xx, &mut l);
        if !all {
            let mut s = (0f32, 0f32);
            grid_sums(xb, &weight, &index, |_| xx, 1.0, &mut s);
            if s.0 > 0.0 && s.1 > 0.0 {
                scale = s.0 / s.1;
            }
        }
        for (k, &j) in index.iter().enumerate() {
            b[2 + 4 * ib + k] = j as u8;
            qh[ib] |= (j >> 8) << (3 * k);
        }
        scales[ib] = scale;
        shifts[ib] = shift;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 15.0;
    // ggml's "fudge factor" on the stored scale.
    b[..2].copy_from_slice(&f32_to_fp16(d * 1.125).to_le_bytes());
    let id = 1.0 / d;
    for ib in 0..8 {
        let mut l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7) as u16;
        if shifts[ib] == -1 {
            l |= 8;
        }
        qh[ib] |= l << 12;
        b[34 + 2 * ib..36 + 2 * ib].copy_from_slice(&qh[ib].to_le_bytes());
    }
}

/// IQ1_M's shift choices for the two groups of a block: 0 `(+, +)`, 1 `(+, -)`, 2 `(-, +)`,
/// 3 `(-, -)`; the values of group `k` under choice `s`.
fn m_values(s: usize, k: usize) -> &'static [f32; 3] {
    let positive = if k == 0 { s < 2 } else { s.is_multiple_of(2) };
    if positive {
        &X_P
    } else {
        &X_M
    }
}

/// ggml's `quantize_row_iq1_m_impl` for one super-block (56 bytes); `qw` `None` weights each
/// value by its square, as ggml does without an importance matrix.
pub(crate) fn quantize_iq1_m(xbl: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    const BS: usize = 16;
    const HALF: usize = BS / 2;
    b.fill(0);
    let (mut scales, mut shifts) = ([0f32; 16], [0usize; 16]);
    let mut max_scale = 0f32;
    let sigma2 = sigma2(xbl);
    for ib in 0..QK_K / BS {
        let xb = &xbl[BS * ib..BS * ib + BS];
        let weight: [f32; BS] = block_weights(xb, qw.map(|q| &q[BS * ib..]), sigma2);
        if abs_max(xb) < 1e-7 {
            continue;
        }
        let idx: [usize; BS] = sorted_order(xb);
        // Prefix sums per half of the block (each half has its own shift); with
        // `v0 - v1 = v1 - v2 = -1` the sum for a split is `T v2 - px[i1] - px[i2]`.
        let (mut px, mut pw) = ([[0f32; BS + 1]; 2], [[0f32; BS + 1]; 2]);
        for (j, &i) in idx.iter().enumerate() {
            let h = usize::from(i >= HALF);
            px[h][j + 1] = px[h][j] + weight[i] * xb[i];
            px[1 - h][j + 1] = px[1 - h][j];
            pw[h][j + 1] = pw[h][j] + weight[i];
            pw[1 - h][j + 1] = pw[1 - h][j];
        }
        let txs = [px[0][BS], px[1][BS]];
        let tws = [pw[0][BS], pw[1][BS]];
        let (p2, m2) = (X_P[2], X_M[2]);
        let cp1 = X_P[0] * X_P[0] - X_P[1] * X_P[1];
        let cp2 = X_P[1] * X_P[1] - X_P[2] * X_P[2];
        let cm1 = X_M[0] * X_M[0] - X_M[1] * X_M[1];
        let cm2 = X_M[1] * X_M[1] - X_M[2] * X_M[2];
        let (mut best_score, mut scale) = (-f32::MAX, abs_max(xb));
        let mut best: Option<(usize, usize, usize)> = None;
        for i1 in 0..=BS {
            for i2 in i1..=BS {
                let (mut qx_p, mut qx_m, mut q2_p, mut q2_m) =
                    ([0f32; 2], [0f32; 2], [0f32; 2], [0f32; 2]);
                for h in 0..2 {
                    let sx = px[h][i1] + px[h][i2];
                    qx_p[h] = txs[h] * p2 - sx;
                    qx_m[h] = txs[h] * m2 - sx;
                    q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                    q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
                }
                let sumqx = [
                    qx_p[0] + qx_p[1],
                    qx_p[0] + qx_m[1],
                    qx_m[0] + qx_p[1],
                    qx_m[0] + qx_m[1],
                ];
                let sumq2 = [
                    q2_p[0] + q2_p[1],
                    q2_p[0] + q2_m[1],
                    q2_m[0] + q2_p[1],
                    q2_m[0] + q2_m[1],
                ];
                for k in 0..4 {
                    if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best_score * sumq2[k] {
                        scale = sumqx[k] / sumq2[k];
                        best_score = scale * sumqx[k];
                        best = Some((i1, i2, k));
                    }
                }
            }
        }
        let Some((i1, i2, mut shift)) = best else {
            continue;
        };
        let mut l = split_levels(&idx, i1, i2);
        if scale < 0.0 {
            l.iter_mut().for_each(|v| *v = 2 - *v);
            scale = -scale;
            shift = 3 - shift;
        }
        let (index, all) = on_grid::<2>(xb, &weight, scale, |k| m_values(shift, k), &mut l);
        if !all {
            let mut s = (0f32, 0f32);
            grid_sums(xb, &weight, &index, |k| m_values(shift, k), 1.0, &mut s);
            if s.0 > 0.0 && s.1 > 0.0 {
                scale = s.0 / s.1;
            }
        }
        b[2 * ib] = index[0] as u8;
        b[2 * ib + 1] = index[1] as u8;
        b[32 + ib] = ((index[0] >> 8) | ((index[1] >> 8) << 4)) as u8;
        scales[ib] = scale;
        shifts[ib] = shift;
        max_scale = c_max(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    // Scales to 3 bits, then the super-block scale refitted to the stored grid entries and
    // scales (every block, the skipped ones too, as ggml does).
    let mut sc = [0u16; 4];
    let mut d = max_scale / 15.0;
    let id = 1.0 / d;
    let mut s = (0f32, 0f32);
    for ib in 0..16 {
        let l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7);
        sc[ib / 4] |= (l as u16) << (3 * (ib % 4));
        b[32 + ib] |= [0x00, 0x80, 0x08, 0x88][shifts[ib]];
        let xb = &xbl[BS * ib..BS * ib + BS];
        let weight: [f32; BS] = block_weights(xb, qw.map(|q| &q[BS * ib..]), sigma2);
        let qh = b[32 + ib] as usize;
        let index = [
            (b[2 * ib] as usize | (qh << 8) & 0x700) as u16,
            (b[2 * ib + 1] as usize | (qh << 4) & 0x700) as u16,
        ];
        let mul = (2 * l + 1) as f32;
        grid_sums(
            xb,
            &weight,
            &index,
            |k| m_values(shifts[ib], k),
            mul,
            &mut s,
        );
    }
    if s.1 > 0.0 {
        d = s.0 / s.1;
    }
    // ggml's "fudge factor" on the stored scale.
    let d16 = f32_to_fp16(d * 1.1125);
    sc[0] |= (d16 & 0x000f) << 12;
    sc[1] |= (d16 & 0x00f0) << 8;
    sc[2] |= (d16 & 0x0f00) << 4;
    sc[3] |= d16 & 0xf000;
    for (i, v) in sc.iter().enumerate() {
        b[48 + 2 * i..50 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `IQ1S_GRID` is ggml's `kgrid_1bit_2048` (levels packed 2 bits each), which is sorted.
    #[test]
    fn grid_keys_ascend() {
        let gm = grid_map();
        let keys: Vec<u32> = (0..2048u16)
            .map(|j| {
                let l = gm.levels(j);
                (0..8).fold(0, |k, i| k | (l[i] as u32) << (2 * i))
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(&keys[..4], &[0, 2, 5, 8]);
    }

    #[test]
    fn stable_sort_keeps_ties_in_order() {
        let x = [1.0, -0.0, 0.0, -1.0, 1.0];
        assert_eq!(sorted_order::<5>(&x), [3, 1, 2, 0, 4]);
    }
}

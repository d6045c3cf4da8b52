//! The grid search the IQ2 types quantize with (ggml's `iq2xs_init_impl` and
//! `iq2_find_best_neighbour`): a group of 8 magnitudes is fitted with 8 levels `l` in 0..3
//! (value `2 l + 1`) that must form an entry of the format's grid; a rounding that is not on
//! the grid is replaced by its best neighbour among the entries nearest to it. Float
//! operations keep ggml's operand order (ggml-base is built without FMA).

use crate::k_common::nearest_int;

/// Keys: 8 levels of 2 bits; ggml sizes its map to the largest key of levels 0..=2, + 2.
const KMAP_SIZE: usize = 43692;

/// A grid as the quantizer sees it: for each 16-bit key of 8 levels, the entry with exactly
/// those levels, or for keys off the grid the entries at the `nwant` smallest squared
/// distances from it (ties in index order).
pub(crate) struct GridMap {
    levels: Vec<[i32; 8]>,
    map: Vec<Result<u16, Vec<u16>>>,
}

fn key(l: &[i8]) -> usize {
    (0..8).fold(0usize, |k, i| k | (l[i] as usize) << (2 * i))
}

impl GridMap {
    /// `levels[k]`: the levels of grid entry `k`; `nwant`: 2 for IQ2_XXS/IQ2_XS, 1 for IQ2_S,
    /// 3 for the IQ1 types.
    pub(crate) fn new(levels: Vec<[i32; 8]>, nwant: usize) -> GridMap {
        let mut on_grid = vec![None; KMAP_SIZE];
        for (j, l) in levels.iter().enumerate() {
            let l8: [i8; 8] = l.map(|v| v as i8);
            on_grid[key(&l8)] = Some(j as u16);
        }
        // ggml sorts all entries by (distance, index) for every key off the grid; the
        // squared distances are small integers (at most 8 * 6²), so picking the `nwant`
        // smallest distances and listing each one's entries in index order is the same list
        // without the sort (which matters for IQ1's 2048 entries x 41k keys).
        let mut dist = vec![0usize; levels.len()];
        let map = (0..KMAP_SIZE)
            .map(|u| match on_grid[u] {
                Some(j) => Ok(j),
                None => {
                    let pos: [i32; 8] = std::array::from_fn(|k| ((u >> (2 * k)) & 3) as i32);
                    let mut seen = [false; 8 * 36 + 1];
                    for (d, l) in dist.iter_mut().zip(&levels) {
                        *d = (0..8).map(|k| 4 * (l[k] - pos[k]).pow(2)).sum::<i32>() as usize;
                        seen[*d] = true;
                    }
                    let mut out = Vec::new();
                    for d2 in (0..seen.len()).filter(|&d| seen[d]).take(nwant) {
                        out.extend((0..dist.len()).filter(|&j| dist[j] == d2).map(|j| j as u16));
                    }
                    Err(out)
                }
            })
            .collect();
        GridMap { levels, map }
    }

    /// The entry for levels `l[0..8]` or the candidates to replace them with.
    pub(crate) fn lookup(&self, l: &[i8]) -> &Result<u16, Vec<u16>> {
        &self.map[key(l)]
    }

    /// The levels of entry `j`.
    pub(crate) fn levels(&self, j: u16) -> [i32; 8] {
        self.levels[j as usize]
    }

    /// ggml's `iq2_find_best_neighbour`: the candidate closest to `xval` at `scale` in
    /// weighted squared error (first on ties); its levels go to `l`. Returns its index.
    pub(crate) fn best_neighbour(
        &self,
        cands: &[u16],
        xval: &[f32],
        w: &[f32],
        scale: f32,
        l: &mut [i8],
    ) -> u16 {
        let mut best = (f32::MAX, cands[0]);
        for &j in cands {
            let pg = self.levels[j as usize];
            let mut d2 = 0f32;
            for i in 0..8 {
                let diff = scale * (2 * pg[i] + 1) as f32 - xval[i];
                d2 += w[i] * diff * diff;
            }
            if d2 < best.0 {
                best = (d2, j);
            }
        }
        let pg = self.levels[best.1 as usize];
        for i in 0..8 {
            l[i] = pg[i] as i8;
        }
        best.1
    }
}

/// The levels of each entry of an IQ2 grid (values 8, 25, 43 are levels 0, 1, 2), for
/// [`GridMap::new`].
pub(crate) fn grid_levels(grid: &[u64]) -> Vec<[i32; 8]> {
    grid.iter()
        .map(|&g| {
            std::array::from_fn(|i| match (g >> (8 * i)) & 0xff {
                8 => 0,
                25 => 1,
                _ => 2,
            })
        })
        .collect()
}

/// The levels of `xval` at inverse scale `id`, clamped to 0..3, for one group of 8.
pub(crate) fn round_group(xval: &[f32], id: f32, l: &mut [i8]) {
    for i in 0..8 {
        l[i] = nearest_int(0.5 * (id * xval[i] - 1.0)).clamp(0, 2) as i8;
    }
}

/// Magnitudes and 7 stored sign bits per group of 8 of `xb`, the 8th sign implied by even
/// parity: a group with an odd number of negative values gives up the sign of its least
/// important value (smallest `weight * x²`), as ggml's IQ2 and IQ3_XXS quantizers do.
pub(crate) fn even_signs(xb: &[f32], weight: &[f32], xval: &mut [f32], signs: &mut [u8]) {
    for (k, s) in signs.iter_mut().enumerate() {
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
        *s = sg & 127;
    }
}

/// `(sum w x q, sum w q²)` with `q = 2 l + 1`, in ggml's order.
pub(crate) fn fit_sums(weight: &[f32], xval: &[f32], l: &[i8]) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for i in 0..l.len() {
        let (w, q) = (weight[i], (2 * l[i] as i32 + 1) as f32);
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The search for 16 magnitudes as two grid groups under one scale (IQ2_XS, IQ2_S): candidate
/// scales `(5 + 0.1 is) / max` for `is` in -9..=9, groups off the grid replaced by their best
/// neighbour, the best fit kept, then the groups that were off the grid rounded again at that
/// scale and the scale refitted. Returns the scale; the levels go to `l`.
pub(crate) fn fit_pair(
    gm: &GridMap,
    xval: &[f32; 16],
    weight: &[f32; 16],
    waux: &[f32; 16],
    max: f32,
    l: &mut [i8; 16],
) -> f32 {
    let mut best = 0f32;
    let mut scale = max / 5.0;
    let mut is_on_grid = [true; 2];
    let (mut laux, mut on_aux) = ([0i8; 16], [true; 2]);
    for is in -9..=9 {
        let id = (5.0 + is as f32 * 0.1) / max;
        let this_scale = 1.0 / id;
        for (k, on) in on_aux.iter_mut().enumerate() {
            let g = 8 * k..8 * k + 8;
            round_group(&xval[g.clone()], id, &mut laux[g.clone()]);
            *on = true;
            if let Err(c) = gm.lookup(&laux[g.clone()]) {
                *on = false;
                gm.best_neighbour(
                    c,
                    &xval[g.clone()],
                    &waux[g.clone()],
                    this_scale,
                    &mut laux[g],
                );
            }
        }
        let (sumqx, sumq2) = fit_sums(weight, xval, &laux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            *l = laux;
            is_on_grid = on_aux;
        }
    }
    if is_on_grid.iter().any(|&g| !g) && scale > 0.0 {
        let id = 1.0 / scale;
        for (k, &on) in is_on_grid.iter().enumerate() {
            if on {
                continue;
            }
            let g = 8 * k..8 * k + 8;
            round_group(&xval[g.clone()], id, &mut l[g.clone()]);
            if let Err(c) = gm.lookup(&l[g.clone()]) {
                gm.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], scale, &mut l[g]);
            }
        }
        let (sumqx, sumq2) = fit_sums(weight, xval, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

//! The grid search IQ3_S and IQ3_XXS quantize with (ggml's `iq3xs_init_impl` and the shared
//! part of `quantize_row_iq3_{s,xxs}_impl`). A sub-block of 32 magnitudes is fitted with 8
//! groups of 4 levels `l` in 0..8 (value `2 l + 1`) that must form an entry of the format's
//! grid, under one scale: candidate scales are tried, groups off the grid replaced by their
//! best grid neighbour, and the weighted least-squares scale of the best candidate kept.
//! Float operations keep ggml's operand order (ggml-base is built without FMA).

use crate::k_common::nearest_int;

/// A grid as the quantizer sees it: for each 12-bit key of 4 levels (3 bits each), the entry
/// with exactly those levels, or for keys off the grid the entries at the `nwant` smallest
/// squared distances from it (ties in index order).
pub(crate) struct GridMap {
    levels: Vec<[i32; 4]>,
    map: Vec<Result<u16, Vec<u16>>>,
}

impl GridMap {
    /// `levels[k]`: the levels of grid entry `k`; `nwant`: 2 for 256 entries, 3 for 512.
    pub(crate) fn new(levels: Vec<[i32; 4]>, nwant: usize) -> GridMap {
        let key = |l: &[i32; 4]| (0..4).fold(0usize, |k, i| k | (l[i] as usize) << (3 * i));
        let mut on_grid = vec![None; 4096];
        for (j, l) in levels.iter().enumerate() {
            on_grid[key(l)] = Some(j as u16);
        }
        let map = (0..4096)
            .map(|u| match on_grid[u] {
                Some(j) => Ok(j),
                None => {
                    let pos: [i32; 4] =
                        std::array::from_fn(|k| 2 * ((u >> (3 * k)) & 7) as i32 + 1);
                    let mut dist: Vec<(i32, u16)> = levels
                        .iter()
                        .enumerate()
                        .map(|(j, l)| {
                            let d2 = (0..4).map(|k| (2 * l[k] + 1 - pos[k]).pow(2)).sum();
                            (d2, j as u16)
                        })
                        .collect();
                    dist.sort_unstable();
                    let (mut out, mut d2, mut nhave) = (Vec::new(), dist[0].0, 1);
                    for &(d, j) in &dist {
                        if d > d2 {
                            if nhave == nwant {
                                break;
                            }
                            d2 = d;
                            nhave += 1;
                        }
                        out.push(j);
                    }
                    Err(out)
                }
            })
            .collect();
        GridMap { levels, map }
    }

    fn lookup(&self, l: &[i8]) -> &Result<u16, Vec<u16>> {
        &self.map[(0..4).fold(0usize, |u, i| u | (l[i] as usize) << (3 * i))]
    }

    /// The entry with levels `l[0..4]`, if on the grid.
    pub(crate) fn entry(&self, l: &[i8]) -> Option<u16> {
        self.lookup(l).as_ref().ok().copied()
    }

    /// ggml's `iq3_find_best_neighbour`: the candidate closest to `xval` at `scale` in
    /// weighted squared error (first on ties); its levels go to `l`.
    fn best_neighbour(&self, cands: &[u16], xval: &[f32], w: &[f32], scale: f32, l: &mut [i8]) {
        let mut best = (f32::MAX, cands[0]);
        for &j in cands {
            let pg = self.levels[j as usize];
            let mut d2 = 0f32;
            for i in 0..4 {
                let diff = scale * (2 * pg[i] + 1) as f32 - xval[i];
                d2 += w[i] * diff * diff;
            }
            if d2 < best.0 {
                best = (d2, j);
            }
        }
        let pg = self.levels[best.1 as usize];
        for i in 0..4 {
            l[i] = pg[i] as i8;
        }
    }

    /// The levels for `xval` at inverse scale `id`, clamped to 0..8, for one group of 4.
    fn round_group(xval: &[f32], id: f32, l: &mut [i8]) {
        for i in 0..4 {
            l[i] = nearest_int(0.5 * (id * xval[i] - 1.0)).clamp(0, 7) as i8;
        }
    }
}

/// How IQ3_S and IQ3_XXS differ in the search.
pub(crate) struct Search {
    /// Candidate scales `(15 + 0.2 is) / max` for `is` in `-steps..=steps`.
    pub steps: i32,
    /// Whether groups start out marked on the grid (IQ3_XXS) or off it (IQ3_S).
    pub start_on_grid: bool,
    /// Whether the final pass re-fits only the groups that were off the grid (IQ3_XXS).
    pub refit_only_off_grid: bool,
}

/// Fits one sub-block: `xval` magnitudes, `weight` their weights. Returns the scale (0 when
/// nothing fits); the levels go to `l`.
pub(crate) fn fit(
    gm: &GridMap,
    s: &Search,
    xval: &[f32; 32],
    weight: &[f32; 32],
    max: f32,
    l: &mut [i8; 32],
) -> f32 {
    let waux: [f32; 32] = std::array::from_fn(|i| weight[i].sqrt());
    let mut best = 0f32;
    let mut scale = max / 15.0;
    let mut is_on_grid = [s.start_on_grid; 8];
    let mut laux = [0i8; 32];
    let mut on_aux = [false; 8];
    let sums = |l: &[i8; 32]| {
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for i in 0..32 {
            let (w, q) = (weight[i], (2 * l[i] as i32 + 1) as f32);
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    for is in -s.steps..=s.steps {
        let id = (15.0 + is as f32 * 0.2) / max;
        let this_scale = 1.0 / id;
        for (k, on) in on_aux.iter_mut().enumerate() {
            let g = 4 * k..4 * k + 4;
            GridMap::round_group(&xval[g.clone()], id, &mut laux[g.clone()]);
            *on = true;
            if let Err(cands) = gm.lookup(&laux[g.clone()]) {
                *on = false;
                gm.best_neighbour(
                    cands,
                    &xval[g.clone()],
                    &waux[g.clone()],
                    this_scale,
                    &mut laux[g],
                );
            }
        }
        let (sumqx, sumq2) = sums(&laux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            *l = laux;
            is_on_grid = on_aux;
        }
    }
    if is_on_grid.iter().any(|&g| !g) && scale > 0.0 {
        let id = 1.0 / scale;
        for k in 0..8 {
            if s.refit_only_off_grid && is_on_grid[k] {
                continue;
            }
            let g = 4 * k..4 * k + 4;
            let mut q = [0i8; 4];
            GridMap::round_group(&xval[g.clone()], id, &mut q);
            match gm.lookup(&q) {
                Ok(j) => {
                    let pg = gm.levels[*j as usize];
                    for i in 0..4 {
                        l[4 * k + i] = pg[i] as i8;
                    }
                }
                Err(cands) => {
                    gm.best_neighbour(cands, &xval[g.clone()], &waux[g.clone()], scale, &mut l[g])
                }
            }
        }
        let (sumqx, sumq2) = sums(l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

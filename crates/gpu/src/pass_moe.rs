//! The passes mixtures of experts and latent attention add: products with a stack of
//! matrices chosen per row, the router, the weighted sum of a token's experts, sigmoid and
//! row copies.

use compute::moe::{Gating, Router};

use crate::pass::{check, u};
use crate::tensor::{GpuTensor, GpuWeights, Rows};
use crate::{GpuError, Pass};

/// Weight rows per workgroup of `matvec_id` (`ROWS` in matmul.wgsl).
const ID_ROWS: usize = 4;

/// More rows than this run the tiled kernel over rows grouped by matrix (each matrix
/// decoded once per 32 rows choosing it); fewer run `matvec_id` (one decode per row, no
/// grouping pass): a decode step's experts, or a few tokens' heads.
const ID_TILED_MIN: usize = 64;

/// Rows per tile of `matmul_id_tiled` (`TILE` in matmul.wgsl).
const ID_TILE: usize = 32;

impl Pass {
    /// `y[i][r] = sum_c w[ids[i]][r][c] * x[i / per][c]` for `n` rows `i` (ids are u32
    /// matrix numbers of the stack `w`). Ids out of the stack leave their row unwritten
    /// (the kernel cannot report them; the router and the head ids never make one).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_id(
        &mut self,
        w: &GpuWeights,
        ids: &GpuTensor,
        x: Rows,
        per: usize,
        n: usize,
        y: Rows,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        if per == 0 {
            return Err(GpuError::Shape("matmul_id with 0 rows per input".into()));
        }
        check("matrix ids", n, ids)?;
        let inputs = n.div_ceil(per);
        check(
            "matmul_id input",
            x.off + (inputs - 1) * x.stride + w.cols,
            x.t,
        )?;
        check("matmul_id output", y.off + (n - 1) * y.stride + w.rows, y.t)?;
        let max = self.dev().max_groups as usize;
        if n > ID_TILED_MIN {
            return self.matmul_id_tiled(w, ids, x, per, n, y);
        }
        let row_groups = w.rows.div_ceil(ID_ROWS);
        if row_groups > max {
            return Err(GpuError::Shape(format!(
                "{} rows per stacked matrix exceed {} workgroups",
                w.rows, max
            )));
        }
        let k = self.dev().matrix_kernels(w)?;
        for c in &w.chunks {
            let mut bufs = vec![(1, &c.buf), (2, &x.t.buf), (3, &y.t.buf), (4, &ids.buf)];
            bufs.extend(k.grid.iter().map(|g| (5, g)));
            // Output rows in dispatches of at most `max` (one workgroup row each).
            for i0 in (0..n).step_by(max) {
                let cnt = max.min(n - i0);
                let words = [
                    u(w.rows),
                    u(w.cols),
                    u(n),
                    u(w.row_bytes),
                    u(x.stride),
                    u(y.stride),
                    u(y.off),
                    u(x.off),
                    u(per),
                    u(c.row0 / w.rows),
                    u(c.rows / w.rows),
                    u(i0),
                ];
                self.step(&k.matvec_id, &bufs, &words, [u(row_groups), u(cnt), 1])?;
            }
        }
        Ok(())
    }

    /// [`Pass::matmul_id`] for many rows: the rows grouped by id on the device, then each
    /// matrix times the rows of its group in 32 x 32 tiles.
    #[allow(clippy::too_many_arguments)]
    fn matmul_id_tiled(
        &mut self,
        w: &GpuWeights,
        ids: &GpuTensor,
        x: Rows,
        per: usize,
        n: usize,
        y: Rows,
    ) -> Result<(), GpuError> {
        let max = self.dev().max_groups as usize;
        let (row_tiles, row_chunks) = (w.rows.div_ceil(ID_TILE), n.div_ceil(ID_TILE));
        if row_tiles > max || row_chunks > max || w.count > max {
            return Err(GpuError::Shape(format!(
                "{n} rows of {} matrices of {} rows exceed {max} workgroups",
                w.count, w.rows
            )));
        }
        let k = self.dev().matrix_kernels(w)?;
        let groups = self.dev().id_groups_buffer(2 * w.count + 1 + n);
        let g = self.dev().kernels.ops.group_ids.clone();
        self.step(
            &g,
            &[(4, &ids.buf), (6, &groups)],
            &[u(n), u(w.count)],
            [1, 1, 1],
        )?;
        for c in &w.chunks {
            let mut bufs = vec![(1, &c.buf), (2, &x.t.buf), (3, &y.t.buf), (6, &groups)];
            bufs.extend(k.grid.iter().map(|g| (5, g)));
            let words = [
                u(w.rows),
                u(w.cols),
                u(n),
                u(w.row_bytes),
                u(x.stride),
                u(y.stride),
                u(y.off),
                u(x.off),
                u(per),
                u(c.row0 / w.rows),
                u(c.rows / w.rows),
                u(w.count),
            ];
            let dims = [u(row_tiles), u(row_chunks), u(c.rows / w.rows)];
            self.step(&k.matmul_id_tiled, &bufs, &words, dims)?;
        }
        Ok(())
    }

    /// The router over `n` rows of `r.n_expert` logits (overwritten with the
    /// probabilities): each row's `r.n_used` experts into `ids` (u32) and their weights into
    /// `weights`, one row per invocation, as `compute::moe::route` chooses.
    pub fn route(
        &mut self,
        r: &Router,
        logits: &GpuTensor,
        bias: Option<&GpuTensor>,
        n: usize,
        ids: &GpuTensor,
        weights: &GpuTensor,
    ) -> Result<(), GpuError> {
        r.check().map_err(|e| GpuError::Shape(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        let (ne, k) = (r.n_expert, r.n_used);
        check("router logits", n * ne, logits)?;
        check("chosen experts", n * k, ids)?;
        check("expert weights", n * k, weights)?;
        if let Some(b) = bias {
            check("selection bias", ne, b)?;
        }
        let gating = match r.gating {
            Gating::Softmax => 0,
            Gating::Sigmoid => 1,
            Gating::SoftmaxWeight => 2,
        };
        let flags = u32::from(bias.is_some()) | if r.norm_weights { 2 } else { 0 };
        let words = [
            u(n),
            u(ne),
            u(k),
            gating,
            flags,
            u(r.n_group),
            u(r.n_group_used),
            r.weights_scale.to_bits(),
        ];
        let dummy = self.dev().dummy.clone();
        let bufs = [
            (1, bias.map_or(&dummy, |b| &b.buf)),
            (3, &logits.buf),
            (4, &ids.buf),
            (5, &weights.buf),
        ];
        let groups = self.spread(n.div_ceil(64));
        let p = self.dev().kernels.ops.route.clone();
        self.step(&p, &bufs, &words, groups)
    }

    /// `y[t] = sum_{j < k} w[t * k + j] * x[t * k + j]` for `n` rows of `width`.
    #[allow(clippy::too_many_arguments)]
    pub fn weighted_sum(
        &mut self,
        x: Rows,
        w: &GpuTensor,
        k: usize,
        width: usize,
        n: usize,
        y: Rows,
    ) -> Result<(), GpuError> {
        if n == 0 || width == 0 {
            return Ok(());
        }
        if k == 0 {
            return Err(GpuError::Shape("a weighted sum of 0 rows".into()));
        }
        check("weighted rows", x.off + (n * k - 1) * x.stride + width, x.t)?;
        check("row weights", n * k, w)?;
        check("weighted sum", y.off + (n - 1) * y.stride + width, y.t)?;
        let words = [
            u(n),
            u(width),
            u(k),
            0,
            0,
            0,
            0,
            0,
            u(x.off),
            u(x.stride),
            u(y.off),
            u(y.stride),
        ];
        let groups = self.spread((n * width).div_ceil(256));
        let p = self.dev().kernels.ops.weighted_sum.clone();
        self.step(
            &p,
            &[(1, &x.t.buf), (2, &w.buf), (3, &y.t.buf)],
            &words,
            groups,
        )
    }

    /// `y = 1 / (1 + exp(-y))` over `n` elements.
    pub fn sigmoid(&mut self, y: &GpuTensor, n: usize) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        check("sigmoid", n, y)?;
        let groups = self.spread(n.div_ceil(256));
        let p = self.dev().kernels.ops.sigmoid.clone();
        self.step(&p, &[(3, &y.buf)], &[u(n)], groups)
    }

    /// Copies `n` rows of `width` from `x` to `y`.
    pub fn copy(&mut self, x: Rows, y: Rows, width: usize, n: usize) -> Result<(), GpuError> {
        if n == 0 || width == 0 {
            return Ok(());
        }
        check("copy input", x.off + (n - 1) * x.stride + width, x.t)?;
        check("copy output", y.off + (n - 1) * y.stride + width, y.t)?;
        if std::ptr::eq(x.t, y.t) {
            // One buffer cannot be bound read-only and read-write in one dispatch.
            return Err(GpuError::Shape("a copy within one tensor".into()));
        }
        let words = [
            u(n),
            u(width),
            0,
            0,
            0,
            0,
            0,
            0,
            u(x.off),
            u(x.stride),
            u(y.off),
            u(y.stride),
        ];
        let groups = self.spread((n * width).div_ceil(256));
        let p = self.dev().kernels.ops.copy.clone();
        self.step(&p, &[(1, &x.t.buf), (3, &y.t.buf)], &words, groups)
    }
}

//! Matmuls over weights interleaved at load time (eager loading): Q4_0 by 8 rows
//! ([`quant::q4_0x8`]) and Q4_K by 16 ([`quant::q4_kx16`]). Their kernels take whole groups,
//! whose bytes are the same span as their rows'; row blocks start at multiples of 16 and such
//! matrices have a multiple of 8 (Q4_0) or 16 (Q4_K) rows, so groups never straddle a block.

use quant::order::{InterleavedQ4K, InterleavedQ4_0};
use quant::GgmlType;

use super::{prefetch_rows, Plan, MAX_TILE, PREFETCH_GROUPS, PREFETCH_MAX_TOKENS};

/// The group kernels of an interleaved matrix.
pub(super) enum Groups {
    Q4_0(InterleavedQ4_0),
    Q4K(InterleavedQ4K),
}

impl Groups {
    /// The kernels for interleaved `ty` weights at the active level, if it has them.
    pub(super) fn for_type(ty: GgmlType) -> Option<Groups> {
        match ty {
            GgmlType::Q4_0 => quant::order::interleaved_q4_0().map(Groups::Q4_0),
            GgmlType::Q4_K => quant::order::interleaved_q4_k().map(Groups::Q4K),
            _ => None,
        }
    }
}

impl Plan<'_> {
    /// [`Plan::block`] for interleaved weights.
    pub(super) fn block_groups(&self, g: &Groups, r0: usize, r1: usize, t0: usize, t1: usize) {
        match g {
            Groups::Q4_0(g) => self.block_q4_0(g, r0, r1, t0, t1),
            Groups::Q4K(g) => self.block_q4_k(g, r0, r1, t0, t1),
        }
    }

    /// Q4_0: whole 8-row groups (two at a time where the level can).
    fn block_q4_0(&self, g: &InterleavedQ4_0, r0: usize, r1: usize, t0: usize, t1: usize) {
        const G: usize = quant::q4_0x8::ROWS;
        let w = &self.w;
        let mut res = [0f32; 2 * G * MAX_TILE];
        let mut r = r0;
        while r < r1 {
            let (rows, f) = match g.group16 {
                Some(f) if r + 2 * G <= r1 => (2 * G, f),
                _ => (G, g.group8),
            };
            if t1 - t0 <= PREFETCH_MAX_TOKENS {
                prefetch_rows(w, r + rows * PREFETCH_GROUPS, rows);
            }
            let bytes = &w.data[r * w.row_bytes..(r + rows) * w.row_bytes];
            for t in (t0..t1).step_by(g.toks) {
                let m = g.toks.min(t1 - t);
                let xs: [&[u8]; MAX_TILE] = std::array::from_fn(|i| self.xrow((t + i).min(t1 - 1)));
                f(w.cols, bytes, &xs[..m], &mut res);
                for (dt, chunk) in res[..m * rows].chunks_exact(rows).enumerate() {
                    self.put_run(t + dt, r, chunk);
                }
            }
            r += rows;
        }
    }

    /// Q4_K: 16-row groups; tokens before the plan's `n_first` in llama.cpp's `gemm` order,
    /// the rest in its `gemv` order, as for plain rows.
    fn block_q4_k(&self, g: &InterleavedQ4K, r0: usize, r1: usize, t0: usize, t1: usize) {
        const G: usize = quant::q4_kx16::ROWS;
        let w = &self.w;
        let n_first = self.kernels.n_first;
        let mut res = [0f32; G * MAX_TILE];
        for r in (r0..r1).step_by(G) {
            if t1 - t0 <= PREFETCH_MAX_TOKENS {
                prefetch_rows(w, r + G * PREFETCH_GROUPS, G);
            }
            let bytes = &w.data[r * w.row_bytes..(r + G) * w.row_bytes];
            let mut t = t0;
            while t < t1 {
                let (f, end) = if t < n_first {
                    (g.gemm, n_first.min(t1))
                } else {
                    (g.gemv, t1)
                };
                let m = g.toks.min(end - t);
                let xs: [&[u8]; MAX_TILE] =
                    std::array::from_fn(|i| self.xrow((t + i).min(end - 1)));
                f(w.cols, bytes, &xs[..m], &mut res);
                for (dt, chunk) in res[..m * G].chunks_exact(G).enumerate() {
                    self.put_run(t + dt, r, chunk);
                }
                t += m;
            }
        }
    }
}

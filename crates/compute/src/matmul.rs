//! Weight-matrix products in ggml's style: the activation rows are converted once to the
//! weight type's `vec_dot_type` (Q8_0 / Q8_1 / Q8_K / F16 / F32), then each output element is
//! one `quant::vec_dot`. This is what makes the results track llama.cpp's to ~1e-5 rather
//! than the ~1e-1 a float-activation product gives on quantized weights.
//!
//! The kernels come from `quant::order::matmul_plan`, which picks the summation order
//! llama.cpp's x86 build uses for the weight type, row count and batch size (`vec_dot`, which
//! llamafile's sgemm also keeps for Q8_0/Q5_0; repacked Q4_0 and Q4_K/Q2_K; tiled K-quants),
//! so each output equals llama.cpp's bit for bit where the activations agree. The tile
//! kernels (several weight rows times several tokens, register-blocked) only overlap
//! independent sums and give exactly the single-product bits.

use quant::GgmlType;

use crate::{shape_err, ComputeError};

mod interleaved;
mod paged;
mod view;

pub use paged::PAGED_CHUNK_BYTES;
pub use view::WeightView;

/// Raw output pointer shared by workers that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers only write through the pointer at indices no other worker touches (each
// owns a distinct range of output rows), and the buffer outlives the parallel region.
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}

impl OutPtr {
    // A method (not field access) so closures capture the Sync wrapper, not the raw pointer.
    fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Smallest number of weight rows handled by one task, a multiple of every tile's rows.
const ROW_BLOCK: usize = 16;

/// Row blocks per worker thread and matrix, at least (large matrices): each task claim is an
/// atomic operation, so a generation step over the vocabulary (up to 262k rows) gets a few
/// dozen large tasks per thread rather than thousands of 16-row ones, still enough of them
/// that a descheduled thread's share moves elsewhere.
const TASKS_PER_THREAD: usize = 16;

/// Largest tile side (weight rows or tokens) a kernel may have.
const MAX_TILE: usize = 16;

/// Activation rows processed against one row block at a time (see `matmul`).
const TOKEN_TILE: usize = 32;

/// `out[t][r] = dot(w.row(r), x[t])` for `n` activation rows `x` (`n * w.cols` floats);
/// `out` holds `n * w.rows` floats. `qbuf` is scratch for the converted activations.
pub fn matmul(
    w: &WeightView,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    qbuf: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    if w.residency.is_some() {
        return paged::matmul(w, x, n, out, qbuf);
    }
    matmul_resident(&mut [(w, out)], x, n, qbuf)
}

/// [`matmul`] of several weight matrices against the same activations (Q, K and V; gate and
/// up): the activations are converted once when the matrices share a `vec_dot_type`, and all
/// row blocks of all matrices run in one parallel region, so a decode step pays one pool
/// barrier instead of one per matrix. Each output is bit-identical to its own [`matmul`].
/// Paged matrices are handed back whole afterwards (not chunked).
pub fn matmul_many(
    jobs: &mut [(&WeightView, &mut [f32])],
    x: &[f32],
    n: usize,
    qbuf: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    let r = matmul_resident(jobs, x, n, qbuf);
    for (w, _) in jobs.iter() {
        w.done_with(w.data);
    }
    r
}

/// [`matmul_many`] without the residency hook.
fn matmul_resident(
    jobs: &mut [(&WeightView, &mut [f32])],
    x: &[f32],
    n: usize,
    qbuf: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    let Some((w0, _)) = jobs.first() else {
        return Ok(());
    };
    let (cols, vdt) = (w0.cols, w0.ty.vec_dot_type());
    if jobs
        .iter()
        .any(|(w, _)| w.cols != cols || w.ty.vec_dot_type() != vdt)
    {
        // Different activation encodings: one region per matrix.
        for (w, out) in jobs.iter_mut() {
            matmul_resident(&mut [(*w, &mut **out)], x, n, qbuf)?;
        }
        return Ok(());
    }
    // At most a handful of matrices per call (Q/K/V): plans live on the stack.
    const MAX_JOBS: usize = 4;
    if jobs.len() > MAX_JOBS {
        let (a, b) = jobs.split_at_mut(MAX_JOBS);
        matmul_resident(a, x, n, qbuf)?;
        return matmul_resident(b, x, n, qbuf);
    }
    if x.len() != n * cols {
        return Err(shape_err("matmul input", n * cols, x.len()));
    }
    for (w, out) in jobs.iter() {
        if out.len() != n * w.rows {
            return Err(shape_err("matmul output", n * w.rows, out.len()));
        }
    }
    let q_row = vdt.row_bytes(cols as u64).ok_or_else(|| {
        shape_err(
            "activation row",
            format!("a multiple of {}", vdt.block_size()),
            cols,
        )
    })? as usize;
    qbuf.resize(n * q_row, 0);
    for t in 0..n {
        quant::activation::quantize(
            vdt,
            &x[t * cols..(t + 1) * cols],
            &mut qbuf[t * q_row..(t + 1) * q_row],
        )?;
    }
    // The tiles the matrices will run (one plan lookup per matrix), for the activation
    // forms they read beside the quantized rows.
    let mut tiles = [None; 2 * MAX_JOBS];
    for ((w, _), pair) in jobs.iter().zip(tiles.chunks_exact_mut(2)) {
        if let Some(p) = quant::order::matmul_plan(w.ty, w.rows, n) {
            pair.copy_from_slice(&[p.first.tile, p.rest.tile]);
        }
    }
    let tiles = tiles.iter().flatten();
    // Tiles that take f32 activations (F16 weights) get the f16 rows widened once here.
    let wide = tiles.clone().any(|t| t.x_f32);
    let wide_at = (n * q_row).next_multiple_of(4);
    if wide {
        if vdt != GgmlType::F16 {
            return Err(shape_err("f32-activation tile", "F16 activations", vdt));
        }
        qbuf.resize(wide_at + n * cols * 4, 0);
        let (q, w) = qbuf.split_at_mut(wide_at);
        widen_f16(&q[..n * q_row], w);
    }
    // Tiles that read their activations packed once per matmul (tokens interleaved, for
    // Q6_K's tiled order) get every group of `toks` tokens packed here.
    let pack = tiles.clone().find_map(|t| Some((t.toks, t.pack?)));
    let pack_at = qbuf.len().next_multiple_of(64);
    if let Some((toks, pk)) = pack {
        let gb = (pk.bytes)(cols);
        qbuf.resize(pack_at + n.div_ceil(toks) * gb, 0);
        let (q, packed) = qbuf.split_at_mut(pack_at);
        for (g, out) in packed.chunks_exact_mut(gb).enumerate() {
            let rows: [&[u8]; MAX_TILE] = std::array::from_fn(|i| {
                let t = (g * toks + i).min(n - 1);
                &q[t * q_row..(t + 1) * q_row]
            });
            (pk.f)(cols, &rows[..toks.min(n - g * toks)], out);
        }
    }
    let (qx, xw, xp): (&[u8], &[u8], &[u8]) = {
        let (head, xp) = qbuf.split_at(if pack.is_some() { pack_at } else { qbuf.len() });
        if wide {
            let (q, w) = head.split_at(wide_at);
            (q, &w[..n * cols * 4], xp)
        } else {
            (head, &[], xp)
        }
    };
    let mut plans: [Option<Plan>; MAX_JOBS] = [None, None, None, None];
    let mut first_block = [0usize; MAX_JOBS + 1];
    let mut work = 0;
    for (i, (w, out)) in jobs.iter_mut().enumerate() {
        let plan = Plan::new(w, n, (qx, xw, xp), q_row, out)?;
        first_block[i + 1] = first_block[i] + plan.n_blocks();
        work += w.rows * w.cols * n;
        plans[i] = Some(plan);
    }
    let n_blocks = first_block[jobs.len()];
    let run = |b: usize| {
        // The matrix whose block range holds b (a linear scan over at most four).
        let i = (0..jobs.len())
            .find(|&i| b < first_block[i + 1])
            .expect("block index inside the region");
        if let Some(p) = &plans[i] {
            p.run_block(b - first_block[i]);
        }
    };
    if n_blocks == 1 || work < 32 * 1024 {
        (0..n_blocks).for_each(run)
    } else {
        crate::pool::run(n_blocks, run)
    }
    Ok(())
}

/// `src` (little-endian f16) widened into `dst` (little-endian f32, twice as long): with
/// F16C vectors when both buffers are aligned for their element type (the allocator's
/// alignment makes that the usual case), else one value at a time.
fn widen_f16(src: &[u8], dst: &mut [u8]) {
    use half::slice::HalfFloatSliceExt;
    let n = src.len() / 2;
    let dst = &mut dst[..4 * n];
    if src.as_ptr().align_offset(2) == 0 && dst.as_ptr().align_offset(4) == 0 {
        // SAFETY: f16 and f32 are plain values valid for every bit pattern; the pointers
        // are aligned (checked) and the lengths cover exactly the byte slices, which this
        // function borrows for the views' whole lifetime (shared and exclusive as given).
        let (s, d) = unsafe {
            (
                std::slice::from_raw_parts(src.as_ptr() as *const half::f16, n),
                std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut f32, n),
            )
        };
        s.convert_to_f32_slice(d);
        if cfg!(target_endian = "little") {
            return;
        }
    }
    for (s, d) in src.chunks_exact(2).zip(dst.chunks_exact_mut(4)) {
        let v = half::f16::from_le_bytes([s[0], s[1]]).to_f32();
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// One matrix of a [`matmul_many`] region: its kernels, resolved once, and where it writes.
struct Plan<'a> {
    w: WeightView<'a>,
    n: usize,
    qx: &'a [u8],
    /// The activations widened to f32 (`n * cols` little-endian f32), for tiles that take
    /// them; empty otherwise.
    xw: &'a [u8],
    /// The activations packed in groups of a tile's `toks` tokens, for tiles that take them
    /// (`Tile::pack`); empty otherwise.
    xp: &'a [u8],
    q_row: usize,
    out: OutPtr,
    kernels: quant::order::MatmulPlan,
    /// Set for interleaved weights, which only these kernels can read.
    groups: Option<interleaved::Groups>,
    row_block: usize,
}

impl<'a> Plan<'a> {
    fn new(
        w: &WeightView<'a>,
        n: usize,
        (qx, xw, xp): (&'a [u8], &'a [u8], &'a [u8]),
        q_row: usize,
        out: &mut [f32],
    ) -> Result<Plan<'a>, ComputeError> {
        // Resolved once: the per-element calls are then plain indirect calls, no type match
        // or CPU-feature check. Lengths were validated by the caller.
        let kernels = quant::order::matmul_plan(w.ty, w.rows, n)
            .ok_or(ComputeError::UnsupportedWeight(w.ty))?;
        for k in [kernels.first, kernels.rest] {
            if let Some(t) = k.tile {
                assert!(
                    t.rows <= MAX_TILE && t.toks <= MAX_TILE && ROW_BLOCK.is_multiple_of(t.rows),
                    "tile {t:?} does not fit the row blocks"
                );
                // Packed groups are addressed from the token tiles' starts.
                assert!(
                    t.pack.is_none() || TOKEN_TILE.is_multiple_of(t.toks),
                    "packed tile {t:?} does not divide the token tiles"
                );
            }
        }
        let groups = if w.interleaved {
            Some(interleaved::Groups::for_type(w.ty).ok_or(ComputeError::UnsupportedWeight(w.ty))?)
        } else {
            None
        };
        let row_block = (w.rows / (crate::pool::n_threads() * TASKS_PER_THREAD))
            .next_multiple_of(ROW_BLOCK)
            .max(ROW_BLOCK);
        Ok(Plan {
            w: *w,
            n,
            qx,
            xw,
            xp,
            q_row,
            out: OutPtr(out.as_mut_ptr()),
            kernels,
            groups,
            row_block,
        })
    }

    fn n_blocks(&self) -> usize {
        self.w.rows.div_ceil(self.row_block)
    }

    fn xrow(&self, t: usize) -> &'a [u8] {
        &self.qx[t * self.q_row..(t + 1) * self.q_row]
    }

    /// Activation row `t` for a tile: widened to f32 when the tile takes that.
    fn tile_xrow(&self, tile: &quant::dispatch::Tile, t: usize) -> &'a [u8] {
        if tile.x_f32 {
            let len = 4 * self.w.cols;
            &self.xw[t * len..(t + 1) * len]
        } else {
            self.xrow(t)
        }
    }

    fn put(&self, t: usize, r: usize, v: f32) {
        assert!(t < self.n && r < self.w.rows);
        // SAFETY: the index is inside `out` (n * rows long, checked by the caller), and each
        // output row belongs to one block, which one task runs.
        unsafe { *self.out.at(t * self.w.rows + r) = v }
    }

    /// `put` of `vals` at rows `r..` of token `t`: one check and one copy for a tile's row.
    fn put_run(&self, t: usize, r: usize, vals: &[f32]) {
        assert!(t < self.n && r + vals.len() <= self.w.rows);
        // SAFETY: the run is inside token t's `rows` outputs (checked), so inside `out`; the
        // rows belong to this task's block only, and `vals` is a separate local buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                vals.as_ptr(),
                self.out.at(t * self.w.rows + r),
                vals.len(),
            )
        }
    }

    /// Output rows `b * row_block..` for every token.
    fn run_block(&self, b: usize) {
        let r0 = b * self.row_block;
        let r1 = (r0 + self.row_block).min(self.w.rows);
        let k = &self.kernels;
        // Tokens in tiles so that a tile of activations stays in L2 while all the block's
        // weight rows pass over it, instead of streaming every activation per row.
        for t0 in (0..self.n).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(self.n);
            if let Some(g) = &self.groups {
                self.block_groups(g, r0, r1, t0, t1);
                continue;
            }
            let mid = k.n_first.clamp(t0, t1);
            if t0 < mid {
                self.block(&k.first, r0, r1, t0, mid);
            }
            if mid < t1 {
                self.block(&k.rest, r0, r1, mid, t1);
            }
        }
    }

    /// Weight rows `r0..r1` times tokens `t0..t1`, all in the order of `k`.
    fn block(&self, k: &quant::order::Kernels, r0: usize, r1: usize, t0: usize, t1: usize) {
        let (w, cols) = (&self.w, self.w.cols);
        let mut r = r0;
        if let Some(tile) = k.tile {
            let mut res = [0f32; MAX_TILE * MAX_TILE];
            // Row groups outside, tokens inside: a group's weights stay in L1 while the
            // token tile passes over them.
            while r + tile.rows <= r1 {
                if t1 - t0 <= PREFETCH_MAX_TOKENS && !tile.prefetches {
                    prefetch_rows(w, r + tile.rows * PREFETCH_GROUPS, tile.rows);
                }
                let ws: [&[u8]; MAX_TILE] = std::array::from_fn(|i| w.row((r + i).min(r1 - 1)));
                for t in (t0..t1).step_by(tile.toks) {
                    let m = tile.toks.min(t1 - t);
                    let xs: [&[u8]; MAX_TILE] = match tile.pack {
                        Some(pk) => {
                            // Token tiles start at multiples of the groups (checked in `new`).
                            let gb = (pk.bytes)(w.cols);
                            let g = t / tile.toks;
                            [&self.xp[g * gb..(g + 1) * gb]; MAX_TILE]
                        }
                        None => std::array::from_fn(|i| self.tile_xrow(&tile, (t + i).min(t1 - 1))),
                    };
                    (tile.f)(cols, &ws[..tile.rows], &xs[..m], &mut res);
                    for (dt, chunk) in res[..m * tile.rows].chunks_exact(tile.rows).enumerate() {
                        self.put_run(t + dt, r, chunk);
                    }
                }
                r += tile.rows;
            }
        }
        for r in r..r1 {
            // Rows taken one at a time (no tile): ask for a later row ahead, as the tiles do.
            if k.tile.is_none() && t1 - t0 <= PREFETCH_MAX_TOKENS {
                prefetch_rows(w, r + PREFETCH_ROWS_AHEAD, 1);
            }
            let mut t = t0;
            if let Some(x4) = k.x4 {
                while t + 4 <= t1 {
                    let xs = [
                        self.xrow(t),
                        self.xrow(t + 1),
                        self.xrow(t + 2),
                        self.xrow(t + 3),
                    ];
                    for (i, v) in x4(cols, w.row(r), xs).into_iter().enumerate() {
                        self.put(t + i, r, v);
                    }
                    t += 4;
                }
            }
            for t in t..t1 {
                self.put(t, r, (k.one)(cols, w.row(r), self.xrow(t)));
            }
        }
    }
}

/// Up to this many tokens a tile streams its weight rows once with little arithmetic per
/// byte, so memory latency dominates and the next rows are prefetched.
const PREFETCH_MAX_TOKENS: usize = 3;

/// How many row groups ahead of the kernel the prefetch runs. One group into L2 (below)
/// beat two on every 1B type and on the small models (decode, A/B alternated three times).
const PREFETCH_GROUPS: usize = 1;

/// How many rows ahead the single-row path prefetches.
const PREFETCH_ROWS_AHEAD: usize = 4;

/// Asks for weight rows `r..r + count` (those that exist) to be brought into cache. A tile
/// reads its rows as interleaved streams, one per row, which the hardware prefetcher follows
/// poorly; the group's bytes are contiguous, so they are requested as one range instead.
/// Into L2, not L1 (`T1`): a burst of L1 prefetches for a whole group holds the line fill
/// buffers the kernel's own loads need. Decode on the 1B files, same run, T0 -> T1: Q8_0
/// 14.6 -> 16.2 t/s, Q6_K 18.2 -> 20.9, F16 9.2 -> 10.2; Gemma 3 270M 62.6 -> 68.0,
/// SmolLM2 177 -> 186 (the L2 streamer then pulls the lines up as the kernel reads them).
#[inline]
fn prefetch_rows(w: &WeightView, r: usize, count: usize) {
    if r >= w.rows {
        return;
    }
    let end = (r + count).min(w.rows) * w.row_bytes();
    let bytes = &w.data[r * w.row_bytes()..end];
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot
        // fault; the address is inside the weight slice anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                line.as_ptr() as *const i8
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Embedding lookup: row `id` of `w` decoded to floats into `out` (`w.cols` long).
pub fn get_rows(w: &WeightView, id: usize, out: &mut [f32]) -> Result<(), ComputeError> {
    if id >= w.rows {
        return Err(shape_err("token id", format!("< {}", w.rows), id));
    }
    if w.interleaved {
        return Err(shape_err(
            "embedding layout",
            "plain rows",
            "interleaved rows",
        ));
    }
    if out.len() != w.cols {
        return Err(shape_err("embedding output", w.cols, out.len()));
    }
    quant::dequantize_row(w.ty, w.row(id), out)?;
    w.done_with(w.row(id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ty: GgmlType, rows: usize, cols: usize, w: &[f32]) -> Vec<u8> {
        let rb = ty.row_bytes(cols as u64).unwrap() as usize;
        let mut out = vec![0u8; rows * rb];
        for r in 0..rows {
            quant::quantize_row(
                ty,
                &w[r * cols..(r + 1) * cols],
                &mut out[r * rb..(r + 1) * rb],
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn every_output_is_exactly_the_single_vec_dot() {
        // Rows not a multiple of the row block, tokens spanning two tiles and a partial group
        // of four, so the four-row kernel, the single-row tail and the parallel path all run.
        let cols = 256;
        // One token (generation: four-weight-row kernel) and a batch of two tiles.
        for n in [1, TOKEN_TILE + 7] {
            // 40 rows: a multiple of 8, which llama.cpp repacks (Q4_K).
            for rows in [37, 40] {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.3)
                    .collect();
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0)
                    .collect();
                let mut q = Vec::new();
                for ty in [
                    GgmlType::Q4_0,
                    GgmlType::Q4_1,
                    GgmlType::Q5_0,
                    GgmlType::Q5_1,
                    GgmlType::Q8_0,
                    GgmlType::Q4_K,
                    GgmlType::F16,
                ] {
                    let bytes = encode(ty, rows, cols, &w);
                    let view = WeightView::new(ty, rows, cols, &bytes).unwrap();
                    let mut out = vec![0f32; n * rows];
                    matmul(&view, &x, n, &mut out, &mut q).unwrap();
                    let vdt = ty.vec_dot_type();
                    let q_row = vdt.row_bytes(cols as u64).unwrap() as usize;
                    let mut xq = vec![0u8; q_row];
                    for t in 0..n {
                        quant::activation::quantize(vdt, &x[t * cols..(t + 1) * cols], &mut xq)
                            .unwrap();
                        let plan = quant::order::matmul_plan(ty, rows, n).unwrap();
                        let one = if t < plan.n_first {
                            plan.first.one
                        } else {
                            plan.rest.one
                        };
                        for r in 0..rows {
                            let want = one(cols, view.row(r), &xq);
                            assert_eq!(
                                out[t * rows + r].to_bits(),
                                want.to_bits(),
                                "{ty} t={t} r={r}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn interleaved_q4_0_equals_the_plain_layout_bit_for_bit() {
        if !quant::order::interleaves_q4_0(8) {
            return; // below AVX2 nothing is interleaved (and the constructor refuses)
        }
        let cols = 256;
        // 40 rows: two 16-row pairs and one lone group; 1, 3 and 2 tiles of tokens.
        for n in [1, 3, TOKEN_TILE + 7] {
            for rows in [8, 40, 400] {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.3)
                    .collect();
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0)
                    .collect();
                let plain = encode(GgmlType::Q4_0, rows, cols, &w);
                let mut inter = plain.clone();
                assert!(quant::q4_0x8::interleave(&mut inter, rows, cols));
                let (mut a, mut b, mut q) = (vec![0f32; n * rows], vec![0f32; n * rows], vec![]);
                let pv = WeightView::new(GgmlType::Q4_0, rows, cols, &plain).unwrap();
                matmul(&pv, &x, n, &mut a, &mut q).unwrap();
                let iv = WeightView::interleaved_q4_0(rows, cols, &inter).unwrap();
                matmul(&iv, &x, n, &mut b, &mut q).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "n={n} rows={rows}");
                let mut row = vec![0f32; cols];
                assert!(get_rows(&iv, 0, &mut row).is_err());
            }
        }
        assert!(WeightView::interleaved_q4_0(12, 256, &[0u8; 12 * 144]).is_err());
    }

    #[test]
    fn interleaved_q4_k_equals_the_plain_layout_bit_for_bit() {
        if !quant::order::interleaves_q4_k(16) {
            return; // below AVX-512 nothing is interleaved (and the constructor refuses)
        }
        let cols = 512;
        // Token counts with and without a `gemv` remainder, across token tiles.
        for n in [1, 3, 4, 6, TOKEN_TILE + 7] {
            for rows in [16, 48, 400] {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.3)
                    .collect();
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0)
                    .collect();
                let plain = encode(GgmlType::Q4_K, rows, cols, &w);
                let mut inter = plain.clone();
                assert!(quant::q4_kx16::interleave(&mut inter, rows, cols));
                let (mut a, mut b, mut q) = (vec![0f32; n * rows], vec![0f32; n * rows], vec![]);
                let pv = WeightView::new(GgmlType::Q4_K, rows, cols, &plain).unwrap();
                matmul(&pv, &x, n, &mut a, &mut q).unwrap();
                let iv = WeightView::interleaved_q4_k(rows, cols, &inter).unwrap();
                matmul(&iv, &x, n, &mut b, &mut q).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "n={n} rows={rows}");
            }
        }
        assert!(WeightView::interleaved_q4_k(24, 256, &[0u8; 24 * 144]).is_err());
    }

    #[test]
    fn widening_f16_is_exact_aligned_or_not() {
        let vals = [0.0f32, -0.0, 1.5, -65504.0, 6e-8, 3.140625];
        let src: Vec<u8> = vals
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        for shift in [0, 1] {
            let mut s = vec![0u8; src.len() + 1];
            s[shift..shift + src.len()].copy_from_slice(&src);
            let mut d = vec![0u8; 4 * vals.len() + 1];
            widen_f16(&s[shift..shift + src.len()], &mut d[shift..]);
            for (i, &v) in vals.iter().enumerate() {
                let got = f32::from_le_bytes(d[shift + 4 * i..][..4].try_into().unwrap());
                assert_eq!(got.to_bits(), half::f16::from_f32(v).to_f32().to_bits());
            }
        }
    }

    #[test]
    fn f32_and_q8_0_products_match_float_reference() {
        let (rows, cols, n) = (40, 64, 3);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
            .collect();
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.2)
            .collect();
        let mut want = vec![0f64; n * rows];
        for t in 0..n {
            for r in 0..rows {
                want[t * rows + r] = (0..cols)
                    .map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64)
                    .sum();
            }
        }
        let mut q = Vec::new();
        for (ty, tol) in [(GgmlType::F32, 1e-5), (GgmlType::Q8_0, 0.05)] {
            let bytes = encode(ty, rows, cols, &w);
            let view = WeightView::new(ty, rows, cols, &bytes).unwrap();
            let mut out = vec![0f32; n * rows];
            matmul(&view, &x, n, &mut out, &mut q).unwrap();
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < tol, "{ty}: {a} vs {b}");
            }
            let mut row = vec![0f32; cols];
            get_rows(&view, 3, &mut row).unwrap();
            for (a, b) in row.iter().zip(&w[3 * cols..4 * cols]) {
                assert!((a - b).abs() < 0.01);
            }
        }
        let bytes = encode(GgmlType::F32, rows, cols, &w);
        assert!(WeightView::new(GgmlType::F32, rows + 1, cols, &bytes).is_err());
        assert!(WeightView::new(GgmlType::MXFP4, 1, 32, &[0; 17]).is_err());
        let view = WeightView::new(GgmlType::F32, rows, cols, &bytes).unwrap();
        assert!(matmul(&view, &x[1..], n, &mut vec![0f32; n * rows], &mut q).is_err());
        assert!(get_rows(&view, rows, &mut vec![0f32; cols]).is_err());
    }

    #[test]
    fn many_matrices_in_one_region_equal_separate_products() {
        let cols = 256;
        for n in [1, 5] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 7 % 31) as f32 - 15.0) * 0.07)
                .collect();
            // Q4_K and Q5_0 share the Q8_K / Q8_0 split: the last pair takes the fallback
            // (different activation encodings), the first three share one conversion.
            let specs = [
                (GgmlType::Q5_0, 48),
                (GgmlType::Q8_0, 16),
                (GgmlType::Q4_0, 33),
                (GgmlType::Q4_K, 40),
            ];
            let bytes: Vec<Vec<u8>> = specs
                .iter()
                .map(|&(ty, rows)| {
                    let w: Vec<f32> = (0..rows * cols)
                        .map(|i| ((i * 13 % 101) as f32 / 101.0 - 0.5) * 0.4)
                        .collect();
                    encode(ty, rows, cols, &w)
                })
                .collect();
            let views: Vec<WeightView> = specs
                .iter()
                .zip(&bytes)
                .map(|(&(ty, rows), b)| WeightView::new(ty, rows, cols, b).unwrap())
                .collect();
            let mut q = Vec::new();
            let want: Vec<Vec<f32>> = views
                .iter()
                .map(|v| {
                    let mut o = vec![0f32; n * v.rows];
                    matmul(v, &x, n, &mut o, &mut q).unwrap();
                    o
                })
                .collect();
            for group in [&views[..3], &views[..]] {
                let mut outs: Vec<Vec<f32>> =
                    group.iter().map(|v| vec![0f32; n * v.rows]).collect();
                let mut jobs: Vec<(&WeightView, &mut [f32])> = group
                    .iter()
                    .zip(outs.iter_mut())
                    .map(|(v, o)| (v, o.as_mut_slice()))
                    .collect();
                matmul_many(&mut jobs, &x, n, &mut q).unwrap();
                for (o, w) in outs.iter().zip(&want) {
                    let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(o), bits(w), "n {n}");
                }
            }
        }
    }
}

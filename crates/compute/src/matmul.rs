//! Weight-matrix products in ggml's style: the activation rows are converted once to the
//! weight type's `vec_dot_type` (Q8_0 / Q8_1 / Q8_K / F16 / F32), then each output element is
//! one `quant::vec_dot`. This is what makes the results track llama.cpp's to ~1e-5 rather
//! than the ~1e-1 a float-activation product gives on quantized weights.
//!
//! The kernels come from `quant`'s run-time dispatch and sum in the order of ggml's x86
//! kernels for the same instruction set, so each output equals llama.cpp's bit for bit where
//! the activations agree. The multi-row kernels (four tokens, or four weight rows) only
//! overlap independent sums and give exactly the single-row bits.

use quant::GgmlType;

use crate::{shape_err, ComputeError};

/// A row-major weight matrix kept in its on-disk encoding: `rows` rows of `cols` elements.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    row_bytes: usize,
}

impl<'a> WeightView<'a> {
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, ComputeError> {
        if !ty.is_supported() {
            return Err(ComputeError::UnsupportedWeight(ty));
        }
        let row_bytes = ty.row_bytes(cols as u64).ok_or_else(|| {
            shape_err(
                "weight row",
                format!("a multiple of {} ({ty})", ty.block_size()),
                cols,
            )
        })? as usize;
        let expected = row_bytes * rows;
        if data.len() != expected {
            return Err(shape_err("weight bytes", expected, data.len()));
        }
        Ok(WeightView {
            ty,
            rows,
            cols,
            data,
            row_bytes,
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    pub fn row(&self, i: usize) -> &'a [u8] {
        &self.data[i * self.row_bytes..(i + 1) * self.row_bytes]
    }
}

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

/// Rows of the weight handled by one task: large enough to amortize scheduling, small enough
/// to balance the vocabulary projection across threads.
const ROW_BLOCK: usize = 16;

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
    matmul_many(&mut [(w, out)], x, n, qbuf)
}

/// [`matmul`] of several weight matrices against the same activations (Q, K and V; gate and
/// up): the activations are converted once when the matrices share a `vec_dot_type`, and all
/// row blocks of all matrices run in one parallel region, so a decode step pays one pool
/// barrier instead of one per matrix. Each output is bit-identical to its own [`matmul`].
pub fn matmul_many(
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
            matmul_many(&mut [(*w, &mut **out)], x, n, qbuf)?;
        }
        return Ok(());
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
        crate::actq::quantize_activation(
            vdt,
            &x[t * cols..(t + 1) * cols],
            &mut qbuf[t * q_row..(t + 1) * q_row],
        )?;
    }
    let qx: &[u8] = qbuf;
    // At most a handful of matrices per call (Q/K/V): plans live on the stack.
    const MAX_JOBS: usize = 4;
    if jobs.len() > MAX_JOBS {
        let (a, b) = jobs.split_at_mut(MAX_JOBS);
        matmul_many(a, x, n, qbuf)?;
        return matmul_many(b, x, n, qbuf);
    }
    let mut plans: [Option<Plan>; MAX_JOBS] = [None, None, None, None];
    let mut first_block = [0usize; MAX_JOBS + 1];
    let mut work = 0;
    for (i, (w, out)) in jobs.iter_mut().enumerate() {
        let plan = Plan::new(w, n, qx, q_row, out)?;
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

/// One matrix of a [`matmul_many`] region: its kernels, resolved once, and where it writes.
struct Plan<'a> {
    w: WeightView<'a>,
    n: usize,
    qx: &'a [u8],
    q_row: usize,
    out: OutPtr,
    dot: quant::dispatch::VecDotFn,
    dot4: Option<quant::dispatch::VecDotX4Fn>,
    dotw4: Option<quant::dispatch::VecDotW4Fn>,
    gemm: quant::dispatch::VecDotFn,
    n_gemm: usize,
}

impl<'a> Plan<'a> {
    fn new(
        w: &WeightView<'a>,
        n: usize,
        qx: &'a [u8],
        q_row: usize,
        out: &mut [f32],
    ) -> Result<Plan<'a>, ComputeError> {
        let rows = w.rows;
        // Resolved once: the per-element call is then a plain indirect call, no type match
        // or CPU-feature check. Lengths were validated by the caller.
        let mut dot = quant::vec_dot_fn(w.ty).ok_or(ComputeError::UnsupportedWeight(w.ty))?;
        // Four activation rows per weight row where the level has such a kernel: the same
        // bits as four single calls, with the weight unpacked once.
        let mut dot4 = quant::vec_dot_x4_fn(w.ty);
        // Matrices llama.cpp repacks are summed in its gemm order for the first n - n % 4
        // tokens and its gemv order for the rest (see `quant::dispatch::repacked_dot`).
        // Groups of four tokens start at multiples of 4, so a group is either wholly below
        // n - n % 4 (gemm order) or never formed.
        let mut n_gemm = 0;
        let mut gemm = dot;
        // Four weight rows per activation row for the tokens left over from the groups of
        // four (all of them when n < 4, as in generation).
        let mut dotw4 = quant::vec_dot_w4_fn(w.ty);
        if let Some(rp) = quant::dispatch::repacked_dot(w.ty, rows) {
            (dot, gemm, n_gemm) = (rp.gemv, rp.gemm, n - n % 4);
            (dot4, dotw4) = (Some(rp.gemm_x4), None);
        }
        Ok(Plan {
            w: *w,
            n,
            qx,
            q_row,
            out: OutPtr(out.as_mut_ptr()),
            dot,
            dot4,
            dotw4,
            gemm,
            n_gemm,
        })
    }

    fn n_blocks(&self) -> usize {
        self.w.rows.div_ceil(ROW_BLOCK)
    }

    /// Output rows `b * ROW_BLOCK..` for every token.
    fn run_block(&self, b: usize) {
        let (w, n, rows) = (&self.w, self.n, self.w.rows);
        let (qx, q_row, ptr) = (self.qx, self.q_row, &self.out);
        let r0 = b * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        // Tokens in tiles so that a tile of activations stays in L2 while all the block's
        // weight rows (in L1) pass over it, instead of streaming every activation per row.
        for t0 in (0..n).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(n);
            let xrow = |t: usize| &qx[t * q_row..(t + 1) * q_row];
            let put = |t: usize, r: usize, v: f32| {
                debug_assert!(t < n && r < rows);
                // SAFETY: every caller below passes t < n and r in this block's rows, so the
                // index is inside `out` (n * rows long, checked by the caller) and no other
                // task writes it.
                unsafe { *ptr.at(t * rows + r) = v }
            };
            let t4 = if self.dot4.is_some() {
                t0 + (t1 - t0) / 4 * 4
            } else {
                t0
            };
            if let Some(dot4) = self.dot4 {
                for r in r0..r1 {
                    for t in (t0..t4).step_by(4) {
                        let xs = [xrow(t), xrow(t + 1), xrow(t + 2), xrow(t + 3)];
                        for (k, v) in dot4(w.cols, w.row(r), xs).into_iter().enumerate() {
                            put(t + k, r, v);
                        }
                    }
                }
            }
            for t in t4..t1 {
                let f = if t < self.n_gemm { self.gemm } else { self.dot };
                let mut r = r0;
                if let Some(dotw4) = self.dotw4 {
                    while r + 4 <= r1 {
                        let ws = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                        for (k, v) in dotw4(w.cols, ws, xrow(t)).into_iter().enumerate() {
                            put(t, r + k, v);
                        }
                        r += 4;
                    }
                }
                for r in r..r1 {
                    put(t, r, f(w.cols, w.row(r), xrow(t)));
                }
            }
        }
    }
}

/// Embedding lookup: row `id` of `w` decoded to floats into `out` (`w.cols` long).
pub fn get_rows(w: &WeightView, id: usize, out: &mut [f32]) -> Result<(), ComputeError> {
    if id >= w.rows {
        return Err(shape_err("token id", format!("< {}", w.rows), id));
    }
    if out.len() != w.cols {
        return Err(shape_err("embedding output", w.cols, out.len()));
    }
    quant::dequantize_row(w.ty, w.row(id), out)?;
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
                        crate::actq::quantize_activation(
                            vdt,
                            &x[t * cols..(t + 1) * cols],
                            &mut xq,
                        )
                        .unwrap();
                        let repacked = quant::dispatch::repacked_dot(ty, rows);
                        for r in 0..rows {
                            let want = match repacked {
                                Some(rp) if t < n - n % 4 => (rp.gemm)(cols, view.row(r), &xq),
                                Some(rp) => (rp.gemv)(cols, view.row(r), &xq),
                                None => quant::vec_dot(ty, cols, view.row(r), &xq).unwrap(),
                            };
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
        assert!(WeightView::new(GgmlType::IQ3_S, 1, 256, &[0; 110]).is_err());
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

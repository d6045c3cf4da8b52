//! [`Backend`] on the CPU with this crate's own functions, each called as `models`'
//! forward pass calls it (strided rows gathered into the contiguous rows those functions
//! take, so every element takes the same path), so a decoder run through the trait gets
//! that pass's logits bit for bit. Operations run at once; tensors are host vectors.
//!
//! Weights shared from the model's file ([`Backend::share_weights`]) are read where they lie,
//! paged in on demand under lazy loading exactly as the forward pass pages them (the kernels
//! hand what they read back to the file's residency hook); uploaded ones are copied.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use quant::{GgmlType, StoreRange, WeightStore};

use super::{Backend, GluKind, RopeSpec, Span};
use crate::{shape_err, AttnParams, ComputeError, KvCache, KvDtype, Rope, WeightView};

/// The CPU as a [`Backend`], with KV caches of `kv` type.
pub struct Cpu {
    pub kv: KvDtype,
    qbuf: Mutex<Vec<u8>>,
}

impl Cpu {
    pub fn new(kv: KvDtype) -> Cpu {
        Cpu {
            kv,
            qbuf: Mutex::new(Vec::new()),
        }
    }
}

/// A host vector (token ids kept as the bits of f32 elements). Behind a lock so a model's
/// weights on this backend can be shared between threads (a model split between a GPU and
/// the CPU); the operations take it as a `RefCell` would be borrowed. KV caches likewise.
pub struct CpuTensor(RwLock<Vec<f32>>);

impl CpuTensor {
    fn r(&self) -> RwLockReadGuard<'_, Vec<f32>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn w(&self) -> RwLockWriteGuard<'_, Vec<f32>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A weight matrix's bytes, or `count` stacked matrices' ([`Backend::upload_stack`]).
pub struct CpuWeights {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    count: usize,
    data: WeightBytes,
}

/// Where a [`CpuWeights`]' bytes are: its own copy, or borrowed where they lie in the
/// model's file ([`Backend::share_weights`]), whose residency hook (lazy paging) the kernels
/// then hand them back to.
enum WeightBytes {
    Owned(Vec<u8>),
    Shared(Arc<dyn WeightStore>, StoreRange),
}

impl CpuWeights {
    fn new(
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        data: WeightBytes,
    ) -> Result<CpuWeights, ComputeError> {
        let w = CpuWeights {
            ty,
            rows,
            cols,
            count,
            data,
        };
        let len = w.bytes().len();
        if count == 0 || !len.is_multiple_of(count) {
            return Err(shape_err("stacked matrices", count, len));
        }
        WeightView::new(ty, rows, cols, &w.bytes()[..len / count])?;
        Ok(w)
    }

    fn bytes(&self) -> &[u8] {
        match &self.data {
            WeightBytes::Owned(v) => v,
            WeightBytes::Shared(store, at) => store.bytes(*at),
        }
    }

    /// Whether the bytes are borrowed from the model's file rather than copied.
    pub fn is_shared(&self) -> bool {
        matches!(self.data, WeightBytes::Shared(..))
    }

    fn view(&self) -> Result<WeightView<'_>, ComputeError> {
        self.view_at(0)
    }

    /// Matrix `i` of the stack.
    fn view_at(&self, i: usize) -> Result<WeightView<'_>, ComputeError> {
        if i >= self.count {
            return Err(shape_err("matrix of a stack", self.count, i));
        }
        let data = self.bytes();
        let per = data.len() / self.count;
        let residency = match &self.data {
            WeightBytes::Owned(_) => None,
            WeightBytes::Shared(store, _) => store.residency(),
        };
        let v = WeightView::new(self.ty, self.rows, self.cols, &data[i * per..][..per])?;
        Ok(v.paged_by(residency))
    }
}

/// `n` rows of `width` of a span, contiguous.
fn gather(s: Span<CpuTensor>, n: usize, width: usize) -> Result<Vec<f32>, ComputeError> {
    let t = s.t.r();
    if n > 0 && s.off + (n - 1) * s.stride + width > t.len() {
        return Err(shape_err(
            "rows",
            s.off + (n - 1) * s.stride + width,
            t.len(),
        ));
    }
    let mut out = Vec::with_capacity(n * width);
    for r in 0..n {
        out.extend_from_slice(&t[s.off + r * s.stride..][..width]);
    }
    Ok(out)
}

/// Writes contiguous rows back into a span.
fn scatter(s: Span<CpuTensor>, width: usize, rows: &[f32]) -> Result<(), ComputeError> {
    let mut t = s.t.w();
    let n = rows.len() / width.max(1);
    if n > 0 && s.off + (n - 1) * s.stride + width > t.len() {
        return Err(shape_err(
            "rows",
            s.off + (n - 1) * s.stride + width,
            t.len(),
        ));
    }
    for (r, row) in rows.chunks(width).enumerate() {
        t[s.off + r * s.stride..][..width].copy_from_slice(row);
    }
    Ok(())
}

fn prefix(t: &CpuTensor, n: usize) -> Result<RwLockWriteGuard<'_, Vec<f32>>, ComputeError> {
    let v = t.w();
    if n > v.len() {
        return Err(shape_err("elements", n, v.len()));
    }
    Ok(v)
}

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Weights = CpuWeights;
    type Cache = RwLock<KvCache>;

    fn describe(&self) -> String {
        format!(
            "CPU ({}, {} threads)",
            quant::dispatch::active_level().name(),
            crate::n_threads()
        )
    }

    fn tensor(&self, len: usize) -> CpuTensor {
        CpuTensor(RwLock::new(vec![0.0; len]))
    }

    fn upload(&self, data: &[f32]) -> CpuTensor {
        CpuTensor(RwLock::new(data.to_vec()))
    }

    fn write(&self, t: &CpuTensor, data: &[f32]) -> Result<(), ComputeError> {
        prefix(t, data.len())?[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write_ids(&self, t: &CpuTensor, ids: &[u32]) -> Result<(), ComputeError> {
        let mut v = prefix(t, ids.len())?;
        for (d, &id) in v.iter_mut().zip(ids) {
            *d = f32::from_bits(id);
        }
        Ok(())
    }

    fn read(&self, t: &CpuTensor, n: usize) -> Result<Vec<f32>, ComputeError> {
        Ok(prefix(t, n)?[..n].to_vec())
    }

    fn upload_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<CpuWeights, ComputeError> {
        CpuWeights::new(ty, 1, rows, cols, WeightBytes::Owned(data.to_vec()))
    }

    fn upload_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<CpuWeights, ComputeError> {
        CpuWeights::new(ty, count, rows, cols, WeightBytes::Owned(data.to_vec()))
    }

    fn share_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        store: &Arc<dyn WeightStore>,
        at: StoreRange,
    ) -> Result<CpuWeights, ComputeError> {
        CpuWeights::new(ty, 1, rows, cols, WeightBytes::Shared(store.clone(), at))
    }

    fn share_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        store: &Arc<dyn WeightStore>,
        at: StoreRange,
    ) -> Result<CpuWeights, ComputeError> {
        CpuWeights::new(
            ty,
            count,
            rows,
            cols,
            WeightBytes::Shared(store.clone(), at),
        )
    }

    fn kv_cache(
        &self,
        capacity: usize,
        window: usize,
        ubatch: usize,
        n_kv: usize,
        dk: usize,
        dv: usize,
    ) -> Result<RwLock<KvCache>, ComputeError> {
        Ok(RwLock::new(KvCache::windowed(
            self.kv, capacity, window, ubatch, n_kv, dk, dv,
        )))
    }

    fn latent_cache(
        &self,
        capacity: usize,
        dk: usize,
        dv: usize,
    ) -> Result<RwLock<KvCache>, ComputeError> {
        if dv > dk {
            return Err(shape_err("latent values (a prefix of the keys)", dk, dv));
        }
        Ok(RwLock::new(KvCache::latent(self.kv, capacity, dk, dv)))
    }

    fn flush(&self) -> Result<(), ComputeError> {
        Ok(())
    }

    fn cache_slots(&self, cache: &RwLock<KvCache>) -> usize {
        cache.read().unwrap_or_else(|e| e.into_inner()).slots()
    }

    fn get_rows(
        &self,
        w: &CpuWeights,
        ids: &CpuTensor,
        n: usize,
        y: Span<CpuTensor>,
    ) -> Result<(), ComputeError> {
        let ids: Vec<usize> = prefix(ids, n)?[..n]
            .iter()
            .map(|v| v.to_bits() as usize)
            .collect();
        let view = w.view()?;
        let mut rows = vec![0f32; n * w.cols];
        for (t, &id) in ids.iter().enumerate() {
            crate::get_rows(&view, id, &mut rows[t * w.cols..][..w.cols])?;
        }
        scatter(y, w.cols, &rows)
    }

    fn matmul(
        &self,
        w: &CpuWeights,
        x: Span<CpuTensor>,
        n: usize,
        y: Span<CpuTensor>,
    ) -> Result<(), ComputeError> {
        let xs = gather(x, n, w.cols)?;
        let mut out = vec![0f32; n * w.rows];
        crate::matmul(
            &w.view()?,
            &xs,
            n,
            &mut out,
            &mut self.qbuf.lock().unwrap_or_else(|e| e.into_inner()),
        )?;
        scatter(y, w.rows, &out)
    }

    fn matmul_id(
        &self,
        w: &CpuWeights,
        ids: &CpuTensor,
        x: Span<CpuTensor>,
        per: usize,
        n: usize,
        y: Span<CpuTensor>,
    ) -> Result<(), ComputeError> {
        if per == 0 {
            return Err(shape_err("rows per input row", "at least 1", 0));
        }
        let ids: Vec<usize> = prefix(ids, n)?[..n]
            .iter()
            .map(|v| v.to_bits() as usize)
            .collect();
        if let Some(&bad) = ids.iter().find(|&&id| id >= w.count) {
            return Err(shape_err("matrix id", format!("below {}", w.count), bad));
        }
        let xs = gather(x, n.div_ceil(per), w.cols)?;
        let mut out = vec![0f32; n * w.rows];
        // Rows grouped by matrix, in row order within each (as `models`' MoE block streams
        // an expert once for all its tokens): each product as that block computes it.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| ids[i]);
        let mut qbuf = self.qbuf.lock().unwrap_or_else(|e| e.into_inner());
        let (mut xin, mut res) = (Vec::new(), Vec::new());
        for group in order.chunk_by(|&a, &b| ids[a] == ids[b]) {
            xin.clear();
            for &i in group {
                xin.extend_from_slice(&xs[(i / per) * w.cols..][..w.cols]);
            }
            res.resize(group.len() * w.rows, 0.0);
            crate::matmul(
                &w.view_at(ids[group[0]])?,
                &xin,
                group.len(),
                &mut res,
                &mut qbuf,
            )?;
            for (j, &i) in group.iter().enumerate() {
                out[i * w.rows..][..w.rows].copy_from_slice(&res[j * w.rows..][..w.rows]);
            }
        }
        scatter(y, w.rows, &out)
    }

    fn route(
        &self,
        r: &crate::moe::Router,
        logits: &CpuTensor,
        bias: Option<&CpuTensor>,
        n: usize,
        ids: &CpuTensor,
        weights: &CpuTensor,
    ) -> Result<(), ComputeError> {
        r.check()?;
        let (ne, k) = (r.n_expert, r.n_used);
        let l = prefix(logits, n * ne)?[..n * ne].to_vec();
        let b = bias.map(|b| b.r().clone());
        if b.as_ref().is_some_and(|b| b.len() < ne) {
            return Err(shape_err("selection bias", ne, b.map_or(0, |b| b.len())));
        }
        let (mut probs, mut select) = (Vec::new(), Vec::new());
        let mut chosen = vec![0u32; n * k];
        let mut wts = vec![0f32; n * k];
        for t in 0..n {
            crate::moe::route(
                r,
                &l[t * ne..][..ne],
                b.as_deref().map(|b| &b[..ne]),
                &mut probs,
                &mut select,
                &mut chosen[t * k..][..k],
                &mut wts[t * k..][..k],
            );
        }
        self.write_ids(ids, &chosen)?;
        self.write(weights, &wts)
    }

    fn weighted_sum(
        &self,
        x: Span<CpuTensor>,
        w: &CpuTensor,
        k: usize,
        width: usize,
        n: usize,
        y: Span<CpuTensor>,
    ) -> Result<(), ComputeError> {
        if k == 0 {
            return Err(shape_err("rows summed", "at least 1", 0));
        }
        let xs = gather(x, n * k, width)?;
        let ws = prefix(w, n * k)?[..n * k].to_vec();
        let mut out = vec![0f32; n * width];
        let mut term = vec![0f32; width];
        for t in 0..n {
            let o = &mut out[t * width..][..width];
            for j in 0..k {
                let wt = ws[t * k + j];
                let src = &xs[(t * k + j) * width..][..width];
                // Each weighted expert rounded to f32 on its own, then added: the CPU MoE
                // block's arithmetic.
                let dst = if j == 0 { &mut *o } else { &mut term[..] };
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v * wt;
                }
                if j > 0 {
                    crate::add_in_place(o, &term);
                }
            }
        }
        scatter(y, width, &out)
    }

    fn sigmoid(&self, y: &CpuTensor, n: usize) -> Result<(), ComputeError> {
        for v in &mut prefix(y, n)?[..n] {
            *v = 1.0 / (1.0 + (-*v).exp());
        }
        Ok(())
    }

    fn copy(
        &self,
        x: Span<CpuTensor>,
        y: Span<CpuTensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError> {
        let rows = gather(x, n, width)?;
        scatter(y, width, &rows)
    }

    fn add_bias(&self, y: &CpuTensor, bias: &CpuTensor, n: usize) -> Result<(), ComputeError> {
        let b = bias.r();
        crate::add_bias(&mut prefix(y, n)?[..n], &b);
        Ok(())
    }

    fn norm(
        &self,
        layer: bool,
        x: &CpuTensor,
        w: Option<&CpuTensor>,
        b: Option<&CpuTensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &CpuTensor,
    ) -> Result<(), ComputeError> {
        let len = n * rows;
        if !std::ptr::eq(x, y) {
            let xs = prefix(x, len)?[..len].to_vec();
            prefix(y, len)?[..len].copy_from_slice(&xs);
        }
        let mut v = prefix(y, len)?;
        let w = w.map(|t| t.r());
        let b = b.map(|t| t.r());
        if layer {
            let ones;
            let wv: &[f32] = match &w {
                Some(w) => &w[..n],
                None => {
                    ones = vec![1.0; n];
                    &ones
                }
            };
            crate::layer_norm(&mut v[..len], wv, b.as_deref().map(|b| &b[..n]), eps)
        } else {
            match &w {
                Some(w) => crate::rms_norm_in_place(&mut v[..len], Some(&w[..n]), eps),
                None => {
                    for r in v[..len].chunks_mut(n) {
                        crate::rms_norm_in_place(r, None, eps)?;
                    }
                    Ok(())
                }
            }
        }
    }

    fn rope(
        &self,
        y: Span<CpuTensor>,
        n: usize,
        table: Span<CpuTensor>,
        s: RopeSpec,
    ) -> Result<(), ComputeError> {
        let width = s.n_heads * s.head_dim;
        let mut rows = gather(y, n, width)?;
        let tab = gather(Span::rows(table.t, s.n_rot).at(table.off), n, s.n_rot)?;
        let rope = Rope::new(s.mode, s.n_rot, 0.0);
        let level = quant::dispatch::active_level();
        // Only llama.cpp's soft_max graph (emulated with an f32 cache) ropes K in place; its
        // flash-attention graph (an f16 cache) writes a new tensor.
        let in_place = s.in_place && self.kv == KvDtype::F32;
        for (r, c) in rows.chunks_mut(width).zip(tab.chunks(s.n_rot)) {
            rope.apply_cached_at(level, r, s.n_heads, s.head_dim, c, in_place);
        }
        scatter(y, width, &rows)
    }

    fn glu(
        &self,
        kind: GluKind,
        gate: Span<CpuTensor>,
        up: Span<CpuTensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError> {
        let mut g = gather(gate, n, width)?;
        let u = gather(up, n, width)?;
        match kind {
            GluKind::SwiGlu => crate::swiglu(&mut g, &u),
            GluKind::GeGlu => crate::geglu(&mut g, &u),
        }
        scatter(gate, width, &g)
    }

    fn gelu(&self, y: &CpuTensor, n: usize) -> Result<(), ComputeError> {
        crate::gelu(&mut prefix(y, n)?[..n]);
        Ok(())
    }

    fn add(&self, y: &CpuTensor, x: &CpuTensor, n: usize) -> Result<(), ComputeError> {
        let xs = x.r();
        if xs.len() < n {
            return Err(shape_err("add input", n, xs.len()));
        }
        crate::add_in_place(&mut prefix(y, n)?[..n], &xs[..n]);
        Ok(())
    }

    fn scale(&self, y: &CpuTensor, s: f32, n: usize) -> Result<(), ComputeError> {
        crate::scale(&mut prefix(y, n)?[..n], s);
        Ok(())
    }

    fn softcap(&self, y: &CpuTensor, c: f32, n: usize) -> Result<(), ComputeError> {
        crate::softcap(&mut prefix(y, n)?[..n], c);
        Ok(())
    }

    fn kv_store(
        &self,
        cache: &RwLock<KvCache>,
        k: Span<CpuTensor>,
        v: Span<CpuTensor>,
        n: usize,
        start_pos: usize,
    ) -> Result<(), ComputeError> {
        let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
        let (nkv, dk, dv) = c.dims();
        let dv = if c.is_latent() { 0 } else { dv };
        let (kw, vw) = (nkv * dk, nkv * dv);
        let (ks, vs) = (gather(k, n, kw)?, gather(v, n, vw)?);
        for t in 0..n {
            c.store(start_pos + t, &ks[t * kw..][..kw], &vs[t * vw..][..vw])?;
        }
        Ok(())
    }

    fn attention(
        &self,
        cache: &RwLock<KvCache>,
        p: &AttnParams,
        q: Span<CpuTensor>,
        n: usize,
        start_pos: usize,
        out: Span<CpuTensor>,
    ) -> Result<(), ComputeError> {
        let c = cache.read().unwrap_or_else(|e| e.into_inner());
        let (_, dk, dv) = c.dims();
        let qs = gather(q, n, p.n_head * dk)?;
        let mut o = vec![0f32; n * p.n_head * dv];
        crate::attention(p, &c, &qs, n, start_pos, &mut o)?;
        scatter(out, p.n_head * dv, &o)
    }
}

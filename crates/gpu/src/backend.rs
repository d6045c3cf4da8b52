//! [`compute::backend::Backend`] on a GPU: operations are recorded into one pending pass,
//! submitted when the host next writes or reads a tensor (or on `flush`), so a forward pass
//! is one submission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use compute::backend::{Backend, GluKind, RopeSpec, Span};
use compute::moe::Router;
use compute::{AttnParams, ComputeError, RopeMode};
use quant::GgmlType;

use crate::{
    AttnArgs, GpuDevice, GpuError, GpuKvCache, GpuTensor, GpuWeights, Pass, RopeArgs, Rows,
};

/// A device and the operations queued on it.
pub struct GpuBackend {
    dev: GpuDevice,
    pending: Mutex<Pass>,
    /// Device bytes made through this backend (weights, tensors, caches), never decreased.
    made: AtomicU64,
}

impl From<GpuError> for ComputeError {
    fn from(e: GpuError) -> Self {
        ComputeError::Backend(e.to_string())
    }
}

fn rows(s: Span<GpuTensor>) -> Rows {
    Rows {
        t: s.t,
        off: s.off,
        stride: s.stride,
    }
}

impl GpuBackend {
    pub fn new(dev: GpuDevice) -> GpuBackend {
        GpuBackend {
            pending: Mutex::new(dev.pass()),
            dev,
            made: AtomicU64::new(0),
        }
    }

    /// Device memory this backend has allocated so far (weights, activation buffers, KV
    /// caches; dropped ones included).
    pub fn allocated_bytes(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn count(&self, bytes: u64) {
        self.made.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn device(&self) -> &GpuDevice {
        &self.dev
    }

    fn rec<T>(&self, f: impl FnOnce(&mut Pass) -> Result<T, GpuError>) -> Result<T, ComputeError> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut p)?)
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Weights = GpuWeights;
    type Cache = GpuKvCache;

    fn describe(&self) -> String {
        self.dev.adapter().to_string()
    }

    fn max_elements(&self) -> usize {
        // The weight-split size doubles as the test knob for the row groups of the logits.
        (self.dev.binding_limit().min(self.dev.max_binding()) / 4) as usize
    }

    fn tensor(&self, len: usize) -> GpuTensor {
        self.count(len as u64 * 4);
        self.dev.tensor(len)
    }

    fn upload(&self, data: &[f32]) -> GpuTensor {
        self.count(data.len() as u64 * 4);
        self.dev.upload(data)
    }

    fn write(&self, t: &GpuTensor, data: &[f32]) -> Result<(), ComputeError> {
        self.flush()?;
        self.dev.write(t, data);
        Ok(())
    }

    fn write_ids(&self, t: &GpuTensor, ids: &[u32]) -> Result<(), ComputeError> {
        self.flush()?;
        self.dev.write_u32(t, ids);
        Ok(())
    }

    fn read(&self, t: &GpuTensor, n: usize) -> Result<Vec<f32>, ComputeError> {
        self.flush()?;
        Ok(self.dev.read_n(t, n))
    }

    fn upload_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuWeights, ComputeError> {
        let w = self.dev.upload_weights(ty, rows, cols, data)?;
        self.count(w.bytes());
        Ok(w)
    }

    fn upload_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuWeights, ComputeError> {
        let w = self.dev.upload_stack(ty, count, rows, cols, data)?;
        self.count(w.bytes());
        Ok(w)
    }

    fn latent_cache(
        &self,
        capacity: usize,
        dk: usize,
        dv: usize,
    ) -> Result<GpuKvCache, ComputeError> {
        // One f16 row per position: the values are read from the keys.
        self.count((capacity * dk * 2) as u64);
        Ok(self.dev.latent_cache(capacity, dk, dv)?)
    }

    fn kv_cache(
        &self,
        capacity: usize,
        window: usize,
        ubatch: usize,
        n_kv: usize,
        dk: usize,
        dv: usize,
    ) -> Result<GpuKvCache, ComputeError> {
        let slots = compute::windowed_slots(capacity, window, ubatch);
        self.count((slots * n_kv * (dk + dv) * 2) as u64);
        Ok(self.dev.kv_cache(slots, n_kv, dk, dv)?)
    }

    fn cache_slots(&self, cache: &GpuKvCache) -> usize {
        cache.slots
    }

    fn flush(&self) -> Result<(), ComputeError> {
        self.rec(|p| {
            p.flush();
            Ok(())
        })
    }

    fn get_rows(
        &self,
        w: &GpuWeights,
        ids: &GpuTensor,
        n: usize,
        y: Span<GpuTensor>,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.get_rows(w, ids, n, rows(y)))
    }

    fn matmul(
        &self,
        w: &GpuWeights,
        x: Span<GpuTensor>,
        n: usize,
        y: Span<GpuTensor>,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.matmul(w, rows(x), n, rows(y)))
    }

    fn matmul_id(
        &self,
        w: &GpuWeights,
        ids: &GpuTensor,
        x: Span<GpuTensor>,
        per: usize,
        n: usize,
        y: Span<GpuTensor>,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.matmul_id(w, ids, rows(x), per, n, rows(y)))
    }

    /// On the device (one invocation per token): the chosen experts never come back to the
    /// host, so a MoE layer adds no read-back or submission.
    fn route(
        &self,
        r: &Router,
        logits: &GpuTensor,
        bias: Option<&GpuTensor>,
        n: usize,
        ids: &GpuTensor,
        weights: &GpuTensor,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.route(r, logits, bias, n, ids, weights))
    }

    fn weighted_sum(
        &self,
        x: Span<GpuTensor>,
        w: &GpuTensor,
        k: usize,
        width: usize,
        n: usize,
        y: Span<GpuTensor>,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.weighted_sum(rows(x), w, k, width, n, rows(y)))
    }

    fn sigmoid(&self, y: &GpuTensor, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.sigmoid(y, n))
    }

    fn copy(
        &self,
        x: Span<GpuTensor>,
        y: Span<GpuTensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.copy(rows(x), rows(y), width, n))
    }

    fn add_bias(&self, y: &GpuTensor, bias: &GpuTensor, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.add_bias(y, bias, n))
    }

    fn norm(
        &self,
        layer: bool,
        x: &GpuTensor,
        w: Option<&GpuTensor>,
        b: Option<&GpuTensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &GpuTensor,
    ) -> Result<(), ComputeError> {
        self.rec(|p| {
            if layer {
                p.layer_norm(x, w, b, eps, n, rows, y)
            } else {
                p.rms_norm(x, w, eps, n, rows, y)
            }
        })
    }

    fn rope(
        &self,
        y: Span<GpuTensor>,
        n: usize,
        table: Span<GpuTensor>,
        s: RopeSpec,
    ) -> Result<(), ComputeError> {
        let a = RopeArgs {
            n_heads: s.n_heads,
            head_dim: s.head_dim,
            n_rot: s.n_rot,
            neox: s.mode == RopeMode::Neox,
        };
        self.rec(|p| p.rope(rows(y), n, rows(table), a))
    }

    fn glu(
        &self,
        kind: GluKind,
        gate: Span<GpuTensor>,
        up: Span<GpuTensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.glu(kind, rows(gate), rows(up), width, n))
    }

    fn gelu(&self, y: &GpuTensor, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.gelu(y, n))
    }

    fn add(&self, y: &GpuTensor, x: &GpuTensor, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.add(y, x, n))
    }

    fn scale(&self, y: &GpuTensor, s: f32, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.scale(y, s, n))
    }

    fn softcap(&self, y: &GpuTensor, c: f32, n: usize) -> Result<(), ComputeError> {
        self.rec(|p| p.softcap(y, c, n))
    }

    fn kv_store(
        &self,
        cache: &GpuKvCache,
        k: Span<GpuTensor>,
        v: Span<GpuTensor>,
        n: usize,
        start_pos: usize,
    ) -> Result<(), ComputeError> {
        self.rec(|p| p.kv_store(cache, rows(k), rows(v), n, start_pos))
    }

    fn attention(
        &self,
        cache: &GpuKvCache,
        a: &AttnParams,
        q: Span<GpuTensor>,
        n: usize,
        start_pos: usize,
        out: Span<GpuTensor>,
    ) -> Result<(), ComputeError> {
        let args = AttnArgs {
            n_head: a.n_head,
            scale: a.scale,
            softcap: a.softcap,
            window: a.window,
        };
        self.rec(|p| p.attention(cache, rows(q), n, start_pos, args, rows(out)))
    }
}

//! Device memory: f32 activations, weights in their GGUF encoding, and f16 KV caches.

use quant::GgmlType;
use wgpu::util::DeviceExt;

use crate::{GpuDevice, GpuError};

/// A device buffer of `len` 32-bit elements (f32 activations, or u32 token ids).
pub struct GpuTensor {
    pub(crate) buf: wgpu::Buffer,
    len: usize,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Rows of a tensor: the first at float `off`, each `stride` floats after the previous
/// (a slice of a fused QKV output, or one sequence's rows of a batch).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub stride: usize,
}

impl<'a> Rows<'a> {
    pub fn new(t: &'a GpuTensor, stride: usize) -> Rows<'a> {
        Rows { t, off: 0, stride }
    }

    /// The same rows starting `off` floats later.
    pub fn at(self, off: usize) -> Rows<'a> {
        Rows {
            off: self.off + off,
            ..self
        }
    }
}

/// Rows `row0..row0 + rows` of a weight matrix in one binding.
pub(crate) struct Chunk {
    pub buf: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

/// A weight matrix uploaded once in its GGUF type, never widened on the device; split by
/// whole rows into bindings no larger than the device's storage binding limit. Or a stack of
/// `count` such matrices (a 3-D tensor: experts, per-head matrices), split between whole
/// matrices, for [`crate::Pass::matmul_id`].
pub struct GpuWeights {
    pub ty: GgmlType,
    /// Rows of one matrix.
    pub rows: usize,
    pub cols: usize,
    /// Matrices stacked (1: a plain matrix).
    pub count: usize,
    pub(crate) row_bytes: usize,
    pub(crate) chunks: Vec<Chunk>,
}

impl GpuWeights {
    /// How many bindings the matrix is split across.
    pub fn bindings(&self) -> usize {
        self.chunks.len()
    }

    /// Device bytes held.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buf.size()).sum()
    }
}

/// One layer's keys and values in f16, `[kv_head][slot][dim]`, position `p` in slot
/// `p % slots` (a ring for sliding-window layers, as the CPU cache).
pub struct GpuKvCache {
    pub(crate) k: wgpu::Buffer,
    /// A latent cache's values are the keys' first `dv` elements: `v` is `k` itself.
    pub(crate) v: wgpu::Buffer,
    pub latent: bool,
    pub n_kv: usize,
    pub dk: usize,
    pub dv: usize,
    pub slots: usize,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuDevice {
    /// A zeroed buffer of `len` elements.
    pub fn tensor(&self, len: usize) -> GpuTensor {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len.max(1) * 4) as u64,
            usage: USAGE,
            mapped_at_creation: false,
        });
        GpuTensor { buf, len }
    }

    fn init(&self, bytes: &[u8], len: usize) -> GpuTensor {
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: if bytes.is_empty() { &[0; 4] } else { bytes },
                usage: USAGE,
            });
        GpuTensor { buf, len }
    }

    pub fn upload(&self, data: &[f32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(data), data.len())
    }

    pub fn upload_u32(&self, data: &[u32]) -> GpuTensor {
        self.init(bytemuck::cast_slice(data), data.len())
    }

    /// Overwrites the first `data.len()` elements (ordered before the next submission).
    pub fn write(&self, t: &GpuTensor, data: &[f32]) {
        assert!(data.len() <= t.len, "write past the end of a tensor");
        self.queue
            .write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
    }

    pub fn write_u32(&self, t: &GpuTensor, data: &[u32]) {
        assert!(data.len() <= t.len, "write past the end of a tensor");
        self.queue
            .write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
    }

    /// The first `n` elements of `t`, after all submitted work.
    pub fn read_n(&self, t: &GpuTensor, n: usize) -> Vec<f32> {
        assert!(n <= t.len, "read past the end of a tensor");
        if n == 0 {
            return Vec::new();
        }
        let size = (n * 4) as u64;
        // One staging buffer per device, grown on demand: decoding reads the logits every
        // token without allocating device memory.
        let mut slot = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|b| b.size() < size) {
            *slot = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: size.next_power_of_two().max(1 << 16),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let staging = slot.as_ref().expect("staging buffer made above");
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&t.buf, 0, staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        rx.recv()
            .expect("map callback ran")
            .expect("readback buffer mapped");
        let view = staging
            .get_mapped_range(..size)
            .expect("mapped readback range");
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        out
    }

    pub fn read(&self, t: &GpuTensor) -> Vec<f32> {
        self.read_n(t, t.len)
    }

    /// Uploads a `rows x cols` matrix of type `ty` from its raw GGUF bytes.
    pub fn upload_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuWeights, GpuError> {
        self.upload_stack(ty, 1, rows, cols, data)
    }

    /// Uploads `count` stacked `rows x cols` matrices of type `ty` (a 3-D GGUF tensor, its
    /// raw bytes), each binding holding whole matrices.
    pub fn upload_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuWeights, GpuError> {
        if !crate::kernels::supports(ty) {
            return Err(GpuError::Unsupported(ty));
        }
        let row_bytes = ty
            .row_bytes(cols as u64)
            .filter(|_| cols > 0)
            .ok_or_else(|| GpuError::Shape(format!("{cols} columns of {ty}")))?
            as usize;
        let total = count.saturating_mul(rows);
        let expected = total.checked_mul(row_bytes);
        if count == 0 || rows == 0 || expected != Some(data.len()) {
            return Err(GpuError::Shape(format!(
                "{count} x {rows} x {cols} {ty}: {} bytes, expected {}",
                data.len(),
                expected.map_or("more than memory holds".into(), |b| b.to_string())
            )));
        }
        // The kernels read a word past a row's last unaligned field; keep 4 bytes of slack.
        // A stack's bindings end on whole matrices (a row is found by its matrix id).
        let unit = if count > 1 { rows } else { 1 };
        let per =
            ((self.max_binding as usize).saturating_sub(8) / (unit * row_bytes)).max(1) * unit;
        if per * row_bytes + 8 > self.max_binding as usize {
            return Err(GpuError::Shape(format!(
                "{unit} {ty} rows of {row_bytes} bytes exceed the storage binding limit of {}",
                self.max_binding
            )));
        }
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < total {
            let n = per.min(total - row0);
            let bytes = &data[row0 * row_bytes..(row0 + n) * row_bytes];
            let size = (bytes.len() + 4).next_multiple_of(4) as u64;
            let buf = crate::kernels::checked(&self.device, "allocating weights", || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("weights"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: true,
                })
            })?;
            {
                let mut view = buf
                    .get_mapped_range_mut(..)
                    .expect("buffer mapped at creation");
                view.slice(..bytes.len()).copy_from_slice(bytes);
            }
            buf.unmap();
            chunks.push(Chunk { buf, row0, rows: n });
            row0 += n;
        }
        Ok(GpuWeights {
            ty,
            rows,
            cols,
            count,
            row_bytes,
            chunks,
        })
    }

    /// The buffer `matmul_id`'s grouping pass writes, of at least `words` u32s (grown, never
    /// shrunk; a smaller one stays alive in the steps that bound it).
    pub(crate) fn id_groups_buffer(&self, words: usize) -> wgpu::Buffer {
        let mut slot = self.id_groups.lock().unwrap_or_else(|e| e.into_inner());
        let size = (words * 4) as u64;
        if slot.as_ref().is_none_or(|b| b.size() < size) {
            *slot = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("id groups"),
                size: size.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }));
        }
        slot.as_ref().expect("made above").clone()
    }

    /// A KV cache of `slots` positions per head (head dims even).
    pub fn kv_cache(
        &self,
        slots: usize,
        n_kv: usize,
        dk: usize,
        dv: usize,
    ) -> Result<GpuKvCache, GpuError> {
        self.make_cache(slots, n_kv, dk, dv, false)
    }

    /// A latent attention cache of `slots` positions: one row of `dk` per position (one KV
    /// head), the values its first `dv` elements, held once.
    pub fn latent_cache(&self, slots: usize, dk: usize, dv: usize) -> Result<GpuKvCache, GpuError> {
        if dv > dk {
            return Err(GpuError::Shape(format!(
                "latent values of {dv} in keys of {dk}"
            )));
        }
        self.make_cache(slots, 1, dk, dv, true)
    }

    fn make_cache(
        &self,
        slots: usize,
        n_kv: usize,
        dk: usize,
        dv: usize,
        latent: bool,
    ) -> Result<GpuKvCache, GpuError> {
        // MAX_D in attention.wgsl: DeepSeek's latent rows are 512 + 64.
        if !dk.is_multiple_of(2) || !dv.is_multiple_of(2) || dk > 576 || dv > 576 {
            return Err(GpuError::Shape(format!(
                "head dims {dk}/{dv}: even and at most 576"
            )));
        }
        let mk = |d: usize| -> Result<wgpu::Buffer, GpuError> {
            let size = (slots * n_kv * d * 2).max(4) as u64;
            if size > self.binding_limit {
                return Err(GpuError::Shape(format!(
                    "a KV cache of {size} bytes exceeds the storage binding limit of {}",
                    self.binding_limit
                )));
            }
            Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kv"),
                size,
                usage: USAGE,
                mapped_at_creation: false,
            }))
        };
        let k = mk(dk)?;
        let v = if latent { k.clone() } else { mk(dv)? };
        Ok(GpuKvCache {
            k,
            v,
            latent,
            n_kv,
            dk,
            dv,
            slots,
        })
    }
}

//! Recording operations and submitting them together.
//!
//! A [`Pass`] collects dispatches and their parameters; [`GpuDevice::submit`] writes every
//! parameter block into one reused uniform buffer (grown, never shrunk), finds or makes the
//! bind groups (cached: a decode step binds what the previous one made) and runs the whole
//! list as one compute pass in one submission. No device memory is allocated per call.

use compute::backend::GluKind;

use crate::kernels::MatrixKernels;
use crate::tensor::{GpuKvCache, GpuTensor, GpuWeights, Rows};
use crate::{GpuDevice, GpuError};

/// Bytes reserved per parameter block (every block is at most this large).
const PARAM_BYTES: u64 = 64;

/// Batches of up to this many tokens run the matrix-vector kernel; longer ones the tiled.
pub const MATVEC_MAX_TOKENS: usize = 8;

/// Weight rows per workgroup of the matrix-vector kernel (`ROWS` in matmul.wgsl).
pub(crate) const MATVEC_ROWS: usize = 4;

/// The same for its subgroup form (`SG_ROWS` in matvec_subgroup.wgsl).
pub(crate) const MATVEC_SG_ROWS: usize = 8;

/// Bind groups kept at most (a forward pass of a 30-layer model makes about 500).
const BIND_CACHE_MAX: usize = 4096;

/// A cached bind group not used by this many submissions is dropped (and with it the last
/// references to the buffers it binds: a dropped state's memory is returned soon after).
const KEEP_SUBMITS: u64 = 64;

/// What a bind group is made of besides the layout (which the pipeline fixes).
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: wgpu::ComputePipeline,
    param_off: u64,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

/// The shared parameter buffer and the bind groups made over it.
#[derive(Default)]
pub(crate) struct Uniforms {
    buf: Option<wgpu::Buffer>,
    /// Each group with the submission that last used it.
    groups: std::collections::HashMap<BindKey, (wgpu::BindGroup, u64)>,
    /// Submissions so far.
    generation: u64,
}

struct Step {
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<(u32, wgpu::Buffer)>,
    param_off: u64,
    groups: [u32; 3],
}

/// Operations to run in order in one submission.
pub struct Pass {
    dev: GpuDevice,
    params: Vec<u8>,
    steps: Vec<Step>,
}

/// Rope settings of one call.
#[derive(Clone, Copy, Debug)]
pub struct RopeArgs {
    pub n_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    /// Half-split pairs (NEOX) instead of adjacent ones (NORM).
    pub neox: bool,
}

/// Attention settings of one call (as `compute::AttnParams`).
#[derive(Clone, Copy, Debug)]
pub struct AttnArgs {
    pub n_head: usize,
    pub scale: f32,
    /// 0 disables soft-capping.
    pub softcap: f32,
    /// 0 = unlimited.
    pub window: usize,
}

pub(crate) fn u(x: usize) -> u32 {
    u32::try_from(x).expect("GPU sizes fit in 32 bits")
}

impl GpuDevice {
    /// An empty pass on this device.
    pub fn pass(&self) -> Pass {
        Pass {
            dev: self.clone(),
            params: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// Runs a pass (one compute pass, one submission); returns once it is queued.
    pub fn submit(&self, pass: Pass) {
        self.submit_steps(&pass.params, &pass.steps);
    }

    fn submit_steps(&self, params: &[u8], steps: &[Step]) {
        if steps.is_empty() {
            return;
        }
        let size = (params.len() as u64).max(PARAM_BYTES);
        // Held through the submission: the parameter buffer is shared by every pass.
        let mut u = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        if u.buf.as_ref().is_none_or(|b| b.size() < size) {
            u.buf = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: size.next_power_of_two(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            u.groups.clear();
        }
        if u.groups.len() + steps.len() > BIND_CACHE_MAX {
            u.groups.clear();
        }
        let Uniforms {
            buf,
            groups,
            generation,
        } = &mut *u;
        *generation += 1;
        let now = *generation;
        let ub = buf.as_ref().expect("uniform buffer made above");
        self.queue.write_buffer(ub, 0, params);
        // A bind group depends only on the buffers and the parameter offset, so the groups
        // of a decode step are made once and found again at every later step.
        let keys: Vec<BindKey> = steps
            .iter()
            .map(|s| BindKey {
                pipeline: s.pipeline.clone(),
                param_off: s.param_off,
                buffers: s.buffers.clone(),
            })
            .collect();
        for (s, key) in steps.iter().zip(&keys) {
            if let Some(entry) = groups.get_mut(key) {
                entry.1 = now;
                continue;
            }
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: ub,
                    offset: s.param_off,
                    size: wgpu::BufferSize::new(PARAM_BYTES),
                }),
            }];
            entries.extend(s.buffers.iter().map(|(b, buf)| wgpu::BindGroupEntry {
                binding: *b,
                resource: buf.as_entire_binding(),
            }));
            let g = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &s.pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            groups.insert(key.clone(), (g, now));
        }
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut cp = enc.begin_compute_pass(&Default::default());
            for (s, key) in steps.iter().zip(&keys) {
                cp.set_pipeline(&s.pipeline);
                cp.set_bind_group(0, &groups[key].0, &[]);
                cp.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
            }
        }
        self.queue.submit([enc.finish()]);
        groups.retain(|_, (_, used)| now - *used <= KEEP_SUBMITS);
    }

    /// Drops the cached bind groups (which keep the buffers they bind alive): call after
    /// dropping a state whose device memory should be returned at once. Otherwise a group
    /// goes once `KEEP_SUBMITS` submissions have not used it, and all go past
    /// `BIND_CACHE_MAX`.
    pub fn clear_binding_cache(&self) {
        let mut u = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        u.groups.clear();
    }

    /// Bind groups cached now (diagnostics, tests).
    pub fn cached_bind_groups(&self) -> usize {
        let u = self.uniforms.lock().unwrap_or_else(|e| e.into_inner());
        u.groups.len()
    }

    /// Waits for everything submitted so far.
    pub fn sync(&self) {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    pub(crate) fn matrix_kernels(
        &self,
        w: &GpuWeights,
    ) -> Result<std::sync::Arc<MatrixKernels>, GpuError> {
        self.kernels.matrix(&self.device, w.ty)
    }
}

pub(crate) fn check(what: &str, need: usize, t: &GpuTensor) -> Result<(), GpuError> {
    if need > t.len() {
        return Err(GpuError::Shape(format!(
            "{what}: needs {need} elements, the tensor has {}",
            t.len()
        )));
    }
    Ok(())
}

/// Refuses a stack of matrices where one matrix is meant.
fn plain(w: &GpuWeights) -> Result<(), GpuError> {
    if w.count != 1 {
        return Err(GpuError::Shape(format!(
            "a stack of {} matrices used as one matrix",
            w.count
        )));
    }
    Ok(())
}

impl Pass {
    /// Submits what is recorded and starts again empty (reusing the parameter buffer).
    pub fn flush(&mut self) {
        self.dev.submit_steps(&self.params, &self.steps);
        self.params.clear();
        self.steps.clear();
    }

    pub(crate) fn dev(&self) -> &GpuDevice {
        &self.dev
    }

    /// Operations recorded and not yet submitted.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds a parameter block (up to 16 words) and returns its offset.
    fn param(&mut self, words: &[u32]) -> u64 {
        assert!(words.len() * 4 <= PARAM_BYTES as usize);
        let off = self.params.len() as u64;
        self.params
            .extend(words.iter().flat_map(|w| w.to_le_bytes()));
        let end = (off + PARAM_BYTES).next_multiple_of(self.dev.uniform_align);
        self.params.resize(end as usize, 0);
        off
    }

    pub(crate) fn step(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bufs: &[(u32, &wgpu::Buffer)],
        words: &[u32],
        groups: [u32; 3],
    ) -> Result<(), GpuError> {
        if let Some((_, big)) = bufs.iter().find(|(_, b)| b.size() > self.dev.binding_limit) {
            return Err(GpuError::Shape(format!(
                "a tensor of {} bytes exceeds the storage binding limit of {}",
                big.size(),
                self.dev.binding_limit
            )));
        }
        let param_off = self.param(words);
        self.steps.push(Step {
            pipeline: pipeline.clone(),
            buffers: bufs.iter().map(|(b, buf)| (*b, (*buf).clone())).collect(),
            param_off,
            groups,
        });
        Ok(())
    }

    /// `n` workgroups laid out within the per-dimension limit (kernels flatten x + y * nx).
    pub(crate) fn spread(&self, n: usize) -> [u32; 3] {
        let max = self.dev.max_groups as usize;
        let x = n.clamp(1, max);
        [u(x), u(n.div_ceil(x).max(1)), 1]
    }

    /// `y[t][r] = sum_k w[r][k] * x[t][k]` for `n` rows of `x` (`x.stride` apart) into rows
    /// of `y` (`y.stride` apart, `w.rows` outputs from `y.off`).
    pub fn matmul(&mut self, w: &GpuWeights, x: Rows, n: usize, y: Rows) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        plain(w)?;
        check("matmul input", x.off + (n - 1) * x.stride + w.cols, x.t)?;
        check("matmul output", y.off + (n - 1) * y.stride + w.rows, y.t)?;
        let k = self.dev.matrix_kernels(w)?;
        if n <= MATVEC_MAX_TOKENS {
            if let Some(d4) = &k.int_dot {
                return self.matvec_int_dot(d4, w, x, n, y);
            }
        }
        for c in &w.chunks {
            let mut bufs = vec![(1, &c.buf), (2, &x.t.buf), (3, &y.t.buf)];
            bufs.extend(k.grid.iter().map(|g| (5, g)));
            let words = [
                u(c.rows),
                u(w.cols),
                u(n),
                u(w.row_bytes),
                u(x.stride),
                u(y.stride),
                u(y.off + c.row0),
                u(x.off),
            ];
            if n <= MATVEC_MAX_TOKENS {
                if let Some(sg) = &k.matvec_sg {
                    let groups = self.spread(c.rows.div_ceil(MATVEC_SG_ROWS));
                    self.step(sg, &bufs, &words, groups)?;
                } else {
                    let groups = self.spread(c.rows.div_ceil(MATVEC_ROWS));
                    self.step(&k.matvec, &bufs, &words, groups)?;
                }
            } else {
                let groups = [u(c.rows.div_ceil(32)), u(n.div_ceil(32)), 1];
                self.step(&k.tiled, &bufs, &words, groups)?;
            }
        }
        Ok(())
    }

    /// Embedding lookup: row `ids[t]` of `w` decoded into row `t` of `y`, for `n` ids.
    pub fn get_rows(
        &mut self,
        w: &GpuWeights,
        ids: &GpuTensor,
        n: usize,
        y: Rows,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        plain(w)?;
        check("token ids", n, ids)?;
        check("embedding output", y.off + (n - 1) * y.stride + w.cols, y.t)?;
        let k = self.dev.matrix_kernels(w)?;
        for c in &w.chunks {
            let words = [
                u(c.rows),
                u(w.cols),
                u(n),
                u(w.row_bytes),
                0,
                u(y.stride),
                u(y.off),
                u(c.row0),
            ];
            let groups = self.spread(n);
            let mut bufs = vec![(1, &c.buf), (3, &y.t.buf), (4, &ids.buf)];
            bufs.extend(k.grid.iter().map(|g| (5, g)));
            self.step(&k.get_rows, &bufs, &words, groups)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn norm(
        &mut self,
        layer: bool,
        x: &GpuTensor,
        w: Option<&GpuTensor>,
        b: Option<&GpuTensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &GpuTensor,
    ) -> Result<(), GpuError> {
        check("norm input", n * rows, x)?;
        check("norm output", n * rows, y)?;
        for t in [w, b].into_iter().flatten() {
            check("norm weight", n, t)?;
        }
        // In place: one read-write binding (a buffer cannot be bound twice that way).
        let in_place = std::ptr::eq(x, y);
        let flags = w.map_or(0, |_| 1) | b.map_or(0, |_| 2) | if in_place { 4 } else { 0 };
        let words = [u(n), u(rows), flags, 0, 0, 0, eps.to_bits(), 0, 0, 0, 0, 0];
        let ops = &self.dev.kernels.ops;
        let p = if layer {
            ops.layer_norm.clone()
        } else {
            ops.rms_norm.clone()
        };
        let dummy = &self.dev.dummy.clone();
        let xin = if in_place { dummy } else { &x.buf };
        let mut bufs = vec![(1, xin), (2, w.map_or(dummy, |w| &w.buf)), (3, &y.buf)];
        if layer {
            bufs.push((4, b.map_or(dummy, |b| &b.buf)));
        }
        let groups = self.spread(rows);
        self.step(&p, &bufs, &words, groups)?;
        Ok(())
    }

    /// RMSNorm of `rows` rows of `n`: `y = x / sqrt(mean(x^2) + eps) * w`.
    pub fn rms_norm(
        &mut self,
        x: &GpuTensor,
        w: Option<&GpuTensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &GpuTensor,
    ) -> Result<(), GpuError> {
        self.norm(false, x, w, None, eps, n, rows, y)
    }

    /// LayerNorm of `rows` rows of `n`: `y = (x - mean) / sqrt(var + eps) * w + b`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &mut self,
        x: &GpuTensor,
        w: Option<&GpuTensor>,
        b: Option<&GpuTensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &GpuTensor,
    ) -> Result<(), GpuError> {
        self.norm(true, x, w, b, eps, n, rows, y)
    }

    /// Rotates `n` tokens' heads in `y` (rows `y.stride` apart) in place; `cos_sin` holds
    /// `n_rot` floats per token from `cos_sin.off` (cos, sin per pair:
    /// `compute::Rope::fill_cache`; its stride is ignored).
    pub fn rope(&mut self, y: Rows, n: usize, cos_sin: Rows, a: RopeArgs) -> Result<(), GpuError> {
        if n == 0 || a.n_rot == 0 {
            return Ok(());
        }
        if a.n_rot > a.head_dim || !a.n_rot.is_multiple_of(2) {
            return Err(GpuError::Shape(format!(
                "rope of {} dims in heads of {}",
                a.n_rot, a.head_dim
            )));
        }
        check("rope table", cos_sin.off + n * a.n_rot, cos_sin.t)?;
        check(
            "rope rows",
            y.off + (n - 1) * y.stride + a.n_heads * a.head_dim,
            y.t,
        )?;
        let words = [
            u(n),
            u(a.n_heads),
            u(a.head_dim),
            u(a.n_rot),
            u(y.stride),
            u32::from(a.neox),
            0,
            0,
            u(cos_sin.off),
            u(y.off),
            0,
            0,
        ];
        let groups = self.spread((n * a.n_heads * a.n_rot / 2).div_ceil(256));
        let p = self.dev.kernels.ops.rope.clone();
        self.step(&p, &[(1, &cos_sin.t.buf), (3, &y.t.buf)], &words, groups)?;
        Ok(())
    }

    fn elementwise(
        &mut self,
        p: wgpu::ComputePipeline,
        y: &GpuTensor,
        x: Option<&GpuTensor>,
        n: usize,
        p0: usize,
        f0: f32,
    ) -> Result<(), GpuError> {
        check("element-wise output", n, y)?;
        let mut bufs = vec![(3, &y.buf)];
        if let Some(x) = x {
            check("element-wise input", if p0 > 0 { p0 } else { n }, x)?;
            bufs.push((1, &x.buf));
        }
        let words = [u(n), 0, u(p0), 0, 0, 0, f0.to_bits(), 0, 0, 0, 0, 0];
        let groups = self.spread(n.div_ceil(256));
        self.step(&p, &bufs, &words, groups)?;
        Ok(())
    }

    /// `gate = act(gate) * up` for `n` rows of `width` (gate and up may be two spans of
    /// one tensor, as with a fused `[gate | up]` projection).
    pub fn glu(
        &mut self,
        kind: GluKind,
        gate: Rows,
        up: Rows,
        width: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        if n == 0 || width == 0 {
            return Ok(());
        }
        check("glu gate", gate.off + (n - 1) * gate.stride + width, gate.t)?;
        check("glu up", up.off + (n - 1) * up.stride + width, up.t)?;
        let same = std::ptr::eq(gate.t, up.t);
        let words = [
            u(n),
            0,
            u(width),
            u(gate.stride),
            u(up.stride),
            u32::from(same),
            0,
            0,
            u(up.off),
            u(gate.off),
            0,
            0,
        ];
        let ops = &self.dev.kernels.ops;
        let p = match kind {
            GluKind::SwiGlu => ops.swiglu.clone(),
            GluKind::GeGlu => ops.geglu.clone(),
        };
        let dummy = self.dev.dummy.clone();
        let up_buf = if same { &dummy } else { &up.t.buf };
        let bufs = [(3, &gate.t.buf), (1, up_buf)];
        let groups = self.spread((n * width).div_ceil(256));
        self.step(&p, &bufs, &words, groups)?;
        Ok(())
    }

    /// `gate = silu(gate) * up` over `n` elements.
    pub fn swiglu(&mut self, gate: &GpuTensor, up: &GpuTensor, n: usize) -> Result<(), GpuError> {
        self.glu(GluKind::SwiGlu, Rows::new(gate, n), Rows::new(up, n), n, 1)
    }

    /// `gate = gelu(gate) * up` over `n` elements (tanh approximation).
    pub fn geglu(&mut self, gate: &GpuTensor, up: &GpuTensor, n: usize) -> Result<(), GpuError> {
        self.glu(GluKind::GeGlu, Rows::new(gate, n), Rows::new(up, n), n, 1)
    }

    /// `y = gelu(y)` over `n` elements.
    pub fn gelu(&mut self, y: &GpuTensor, n: usize) -> Result<(), GpuError> {
        let p = self.dev.kernels.ops.gelu.clone();
        self.elementwise(p, y, None, n, 0, 0.0)
    }

    /// `y += x` over `n` elements.
    pub fn add(&mut self, y: &GpuTensor, x: &GpuTensor, n: usize) -> Result<(), GpuError> {
        let p = self.dev.kernels.ops.add.clone();
        self.elementwise(p, y, Some(x), n, 0, 0.0)
    }

    /// Adds `bias` (one row of `bias.len()`) to every row of the first `n` elements of `y`.
    pub fn add_bias(&mut self, y: &GpuTensor, bias: &GpuTensor, n: usize) -> Result<(), GpuError> {
        let p = self.dev.kernels.ops.add.clone();
        self.elementwise(p, y, Some(bias), n, bias.len(), 0.0)
    }

    /// `y *= s` over `n` elements.
    pub fn scale(&mut self, y: &GpuTensor, s: f32, n: usize) -> Result<(), GpuError> {
        let p = self.dev.kernels.ops.scale.clone();
        self.elementwise(p, y, None, n, 0, s)
    }

    /// `y = c * tanh(y / c)` over `n` elements.
    pub fn softcap(&mut self, y: &GpuTensor, c: f32, n: usize) -> Result<(), GpuError> {
        let p = self.dev.kernels.ops.softcap.clone();
        self.elementwise(p, y, None, n, 0, c)
    }

    /// Stores `n` tokens' keys and values (rows of `n_kv * dk` / `n_kv * dv`) for positions
    /// `start_pos..` into `cache` as f16.
    pub fn kv_store(
        &mut self,
        cache: &GpuKvCache,
        k: Rows,
        v: Rows,
        n: usize,
        start_pos: usize,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        check(
            "keys",
            k.off + (n - 1) * k.stride + cache.n_kv * cache.dk,
            k.t,
        )?;
        if !cache.latent {
            check(
                "values",
                v.off + (n - 1) * v.stride + cache.n_kv * cache.dv,
                v.t,
            )?;
        }
        let p = self.dev.kernels.ops.kv_store.clone();
        // A latent cache's values are its keys' prefix: nothing more to store.
        let parts = if cache.latent { 1 } else { 2 };
        for (rows, d, buf) in [(k, cache.dk, &cache.k), (v, cache.dv, &cache.v)]
            .into_iter()
            .take(parts)
        {
            let mut words = [0u32; 16];
            words[0] = u(n);
            words[2] = u(cache.n_kv);
            words[5] = u(cache.slots);
            words[6] = u(start_pos);
            words[10] = u(rows.stride);
            words[11] = u(rows.off);
            words[14] = u(d);
            let groups = self.spread((n * cache.n_kv * d / 2).div_ceil(256));
            self.step(&p, &[(1, &rows.t.buf), (5, buf)], &words, groups)?;
        }
        Ok(())
    }

    /// Attends `n` queries at positions `start_pos..` (`q`: rows of `n_head * dk`) over
    /// `cache` (holding every position the queries see) into rows of `n_head * dv` of `out`.
    pub fn attention(
        &mut self,
        cache: &GpuKvCache,
        q: Rows,
        n: usize,
        start_pos: usize,
        a: AttnArgs,
        out: Rows,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        if a.n_head == 0 || !a.n_head.is_multiple_of(cache.n_kv) {
            return Err(GpuError::Shape(format!(
                "{} query heads over {} KV heads",
                a.n_head, cache.n_kv
            )));
        }
        check(
            "queries",
            q.off + (n - 1) * q.stride + a.n_head * cache.dk,
            q.t,
        )?;
        check(
            "attention output",
            out.off + (n - 1) * out.stride + a.n_head * cache.dv,
            out.t,
        )?;
        let words = [
            u(n),
            u(a.n_head),
            u(cache.n_kv),
            u(cache.dk),
            u(cache.dv),
            u(cache.slots),
            u(start_pos),
            u(a.window),
            a.scale.to_bits(),
            a.softcap.to_bits(),
            u(q.stride),
            u(q.off),
            u(out.stride),
            u(out.off),
            0,
            u32::from(cache.latent),
        ];
        let groups = self.spread(n * a.n_head);
        let p = self.dev.kernels.ops.attend.clone();
        self.step(
            &p,
            &[(1, &q.t.buf), (2, &cache.k), (3, &cache.v), (4, &out.t.buf)],
            &words,
            groups,
        )?;
        Ok(())
    }
}

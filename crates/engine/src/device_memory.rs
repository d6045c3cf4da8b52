//! Device memory of a model on a GPU, from its metadata and tensor directory alone: the
//! weights in their GGUF encoding (norms and biases as f32), the f16 KV cache (sliding-window
//! layers as rings, as the GPU allocates them) and the work buffers of one micro-batch, for
//! all layers on the GPU or only the first `N` (`--gpu-layers`, the token embedding with
//! them, the output projection only when every layer is there). `info --memory` shows it;
//! `--backend auto|gpu` without `--gpu-layers` keeps to the layers that fit in the adapter's
//! memory where the adapter reports it (Vulkan; Metal and DX12 do not through wgpu).

use gguf::GgufFile;

use crate::memory::ModelShape;

/// Device bytes of the weights, per part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceWeights {
    /// Each `blk.N.*` layer's tensors.
    pub layers: Vec<u64>,
    /// The token embedding.
    pub embd: u64,
    /// Everything else (output norm and projection, when it is not the tied embedding).
    pub head: u64,
    /// Rows of the widest `ffn_up` (twice the FFN width when it is Phi-3's fused
    /// `[gate | up]`, whose work buffers are then that wide).
    pub up_rows: u64,
}

impl DeviceWeights {
    pub fn from_gguf(file: &GgufFile, n_layer: u64) -> DeviceWeights {
        // Hostile metadata may claim any layer count; the directory bounds the real one.
        let cap = (n_layer as usize).min(file.tensors().len());
        let mut w = DeviceWeights {
            layers: vec![0; cap],
            ..Default::default()
        };
        for t in file.tensors() {
            let vector = t.dims.iter().skip(1).all(|&d| d == 1);
            let bytes = if vector {
                t.n_elements().saturating_mul(4)
            } else {
                t.size
            };
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            let slot = match layer {
                Some(il) if il < cap => &mut w.layers[il],
                _ if t.name == "token_embd.weight" => &mut w.embd,
                _ => &mut w.head,
            };
            *slot = slot.saturating_add(bytes);
            if t.name.ends_with(".ffn_up.weight") && t.dims.len() == 2 {
                w.up_rows = w.up_rows.max(t.dims[1]);
            }
        }
        w
    }
}

/// Device memory of one placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    /// Layers on the GPU (the rest on the CPU).
    pub gpu_layers: u64,
    pub n_layer: u64,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub scratch_bytes: u64,
}

impl DevicePlan {
    pub fn total(&self) -> u64 {
        self.weights_bytes
            .saturating_add(self.kv_bytes)
            .saturating_add(self.scratch_bytes)
    }
}

/// The device memory of `gpu_layers` layers (`None`: all) for sessions of `max_seq_len`
/// positions, `slots` of them at once.
pub fn device_plan(
    shape: &ModelShape,
    w: &DeviceWeights,
    gpu_layers: Option<u64>,
    max_seq_len: u64,
    slots: u64,
) -> DevicePlan {
    let n_layer = shape.n_layer;
    let n = gpu_layers.unwrap_or(n_layer).min(n_layer);
    if n == 0 {
        return DevicePlan {
            gpu_layers: 0,
            n_layer,
            weights_bytes: 0,
            kv_bytes: 0,
            scratch_bytes: 0,
        };
    }
    let layers: u64 = w
        .layers
        .iter()
        .take(n as usize)
        .fold(0u64, |a, &b| a.saturating_add(b));
    let all = n == n_layer;
    let weights_bytes = w
        .embd
        .saturating_add(layers)
        .saturating_add(if all { w.head } else { 0 });
    let ub = models::DEFAULT_UBATCH;
    let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let per_pos = shape.kv.elems_per_token().saturating_mul(2);
    let kv_bytes = (0..n as usize)
        .map(|il| {
            let swa = shape.swa_layers.get(il).copied().unwrap_or(false);
            let window = if swa { shape.sliding_window } else { 0 };
            let slots = models::windowed_slots(clamp(max_seq_len), clamp(window), ub) as u64;
            slots.saturating_mul(per_pos)
        })
        .fold(0u64, u64::saturating_add)
        .saturating_mul(slots.max(1));
    // One micro-batch's rows: x, h, o, f (n_embd); q, k, v and a fused copy; attention
    // output; gate and up (n_ff, or a fused [gate | up] row each); plus one row of logits
    // when the output is on the GPU.
    let rows = max_seq_len.clamp(1, ub as u64);
    let (qd, vd) = (
        shape.n_head.saturating_mul(shape.head_dim_k),
        shape.n_head.saturating_mul(shape.head_dim_v),
    );
    let kvd = shape.kv.elems_per_token();
    let floats = [
        shape.n_embd.saturating_mul(4),
        qd.saturating_add(kvd).saturating_mul(2),
        vd,
        shape.n_ff.max(w.up_rows).saturating_mul(2),
    ]
    .iter()
    .fold(0u64, |a, &b| a.saturating_add(b));
    let logits = if all { shape.n_vocab } else { 0 };
    let scratch_bytes = rows
        .saturating_mul(floats)
        .saturating_add(logits)
        .saturating_mul(4);
    DevicePlan {
        gpu_layers: n,
        n_layer,
        weights_bytes,
        kv_bytes,
        scratch_bytes,
    }
}

/// The most layers whose plan fits in `budget` bytes (0: not even one).
pub fn layers_that_fit(
    shape: &ModelShape,
    w: &DeviceWeights,
    budget: u64,
    max_seq_len: u64,
    slots: u64,
) -> u64 {
    (0..=shape.n_layer.min(w.layers.len() as u64))
        .rev()
        .find(|&n| device_plan(shape, w, Some(n), max_seq_len, slots).total() <= budget)
        .unwrap_or(0)
}

/// Share of the adapter's memory the plan may take (the driver, other programs and
/// allocation granularity need the rest).
pub const DEVICE_COMFORT: f64 = 0.9;

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
    /// Each layer's experts (all 0 for a dense layer): a part's work buffers are as wide as
    /// its own layers need.
    pub experts: Vec<ExpertWidths>,
    /// Latent attention's widths, for its work buffers.
    pub mla: Option<MlaWidths>,
}

/// A MoE layer's widths: its router (`ffn_gate_inp` rows: experts), one expert
/// (`ffn_up_exps` rows) and its shared expert (`ffn_up_shexp` rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpertWidths {
    pub n_expert: u64,
    pub expert_rows: u64,
    pub shared_rows: u64,
}

/// The row widths of latent attention (DeepSeek-V2/V3), read from its tensors' shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MlaWidths {
    /// `attn_kv_a_mqa` rows: `kv_lora_rank + qk_rope`, the latent cache's row.
    pub kv_a: u64,
    /// `kv_lora_rank` (`attn_kv_a_norm`).
    pub lora: u64,
    /// `q_lora_rank` (`attn_q_a_norm`; 0 without Q compression).
    pub q_lora: u64,
    /// All heads' queries before absorption (`attn_q_b` or `attn_q` rows).
    pub q: u64,
    /// All heads' values (`attn_output` columns).
    pub v: u64,
    /// `attn_kv_b` rows (older files, decompressed; 0 when absorbed).
    pub kv_b: u64,
}

impl DeviceWeights {
    pub fn from_gguf(file: &GgufFile, n_layer: u64) -> DeviceWeights {
        // Hostile metadata may claim any layer count; the directory bounds the real one.
        let cap = (n_layer as usize).min(file.tensors().len());
        let mut w = DeviceWeights {
            layers: vec![0; cap],
            experts: vec![ExpertWidths::default(); cap],
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
            let d = |i: usize| t.dims.get(i).copied().unwrap_or(0);
            // The tensor's name within its layer (`ffn_up.weight`).
            let part = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split_once('.'))
                .map_or("", |(_, p)| p);
            fn mla(w: &mut DeviceWeights) -> &mut MlaWidths {
                w.mla.get_or_insert_with(MlaWidths::default)
            }
            let mut ex = ExpertWidths::default();
            match part {
                "ffn_up.weight" if t.dims.len() == 2 => w.up_rows = w.up_rows.max(d(1)),
                "ffn_gate_inp.weight" => ex.n_expert = d(1),
                "ffn_up_exps.weight" => ex.expert_rows = d(1),
                "ffn_up_shexp.weight" => ex.shared_rows = d(1),
                "attn_kv_a_mqa.weight" => mla(&mut w).kv_a = d(1),
                "attn_kv_a_norm.weight" => mla(&mut w).lora = d(0),
                "attn_q_a_norm.weight" => mla(&mut w).q_lora = d(0),
                "attn_q_b.weight" | "attn_q.weight" => mla(&mut w).q = d(1),
                "attn_output.weight" => mla(&mut w).v = d(0),
                "attn_kv_b.weight" => mla(&mut w).kv_b = d(1),
                _ => {}
            }
            if let Some(e) = layer.and_then(|il| w.experts.get_mut(il)) {
                e.n_expert = e.n_expert.max(ex.n_expert);
                e.expert_rows = e.expert_rows.max(ex.expert_rows);
                e.shared_rows = e.shared_rows.max(ex.shared_rows);
            }
        }
        // Only a layer with a latent KV projection is latent attention (`attn_q` and
        // `attn_output` name every attention's matrices).
        if w.mla.is_some_and(|m| m.kv_a == 0) {
            w.mla = None;
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
    // output; gate and up (n_ff, or a fused [gate | up] row each); what experts and latent
    // attention add; plus one row of logits when the output is on the GPU.
    let rows = max_seq_len.clamp(1, ub as u64);
    let floats = [
        shape.n_embd.saturating_mul(4),
        attention_floats(shape, w),
        ffn_floats(shape, w, n as usize),
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

/// Sum that saturates instead of overflowing (hostile metadata must not panic).
fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |a, &b| a.saturating_add(b))
}

/// Attention's work floats per row (`models::backend`'s buffers).
fn attention_floats(shape: &ModelShape, w: &DeviceWeights) -> u64 {
    let nh = shape.n_head;
    match w.mla {
        // Queries (absorbed `[latent | rope]` per head, or the decompressed keys), the
        // `attn_kv_a_mqa` row, the values, the queries before absorption, the attention
        // output (latent per head, or values), the latent, the Q compression, `attn_kv_b`'s
        // output, the decompressed heads and one matrix id per head.
        Some(m) => {
            let absorbed = m.kv_b == 0;
            let q = if absorbed {
                nh.saturating_mul(m.kv_a)
            } else {
                m.q
            };
            let att = if absorbed {
                nh.saturating_mul(m.lora)
            } else {
                m.v
            };
            let ids = if absorbed { nh } else { 0 };
            sum(&[q, m.kv_a, m.v, m.q, att, m.lora, m.q_lora, m.kv_b, m.v, ids])
        }
        None => {
            let (qd, vd) = (
                nh.saturating_mul(shape.head_dim_k),
                nh.saturating_mul(shape.head_dim_v),
            );
            let kvd = shape.kv.elems_per_token();
            sum(&[qd.saturating_add(kvd).saturating_mul(2), vd])
        }
    }
}

/// The FFN's work floats per row: gate and up; with experts, the router's logits, the
/// chosen ids and weights, each chosen expert's gate, up and output rows, and the shared
/// expert's output and gate.
fn ffn_floats(shape: &ModelShape, w: &DeviceWeights, n_layers: usize) -> u64 {
    let e = w
        .experts
        .iter()
        .take(n_layers)
        .fold(ExpertWidths::default(), |a, b| ExpertWidths {
            n_expert: a.n_expert.max(b.n_expert),
            expert_rows: a.expert_rows.max(b.expert_rows),
            shared_rows: a.shared_rows.max(b.shared_rows),
        });
    if e.n_expert == 0 {
        return shape.n_ff.max(w.up_rows).saturating_mul(2);
    }
    let k = shape.n_expert_used;
    let shared = if e.shared_rows > 0 {
        shape.n_embd.saturating_add(1)
    } else {
        0
    };
    sum(&[
        w.up_rows.max(e.shared_rows).saturating_mul(2),
        e.n_expert,
        k.saturating_mul(2),
        k.saturating_mul(e.expert_rows).saturating_mul(2),
        k.saturating_mul(shape.n_embd),
        shared,
    ])
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

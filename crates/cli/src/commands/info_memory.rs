//! `torchless info MODEL --memory`: what loading the model will cost, per mode, at the default
//! and the trained context (and at `--max-seq-len` when given), before any weight is read.

use anyhow::{anyhow, Result};
use engine::device_memory::{device_plan, DevicePlan, DeviceWeights};
use engine::inspect::GgufFile;
use engine::memory::{self, fmt_bytes, LoadMode, MemoryPlan, Planner};
use engine::KvDtype;
use serde_json::{json, Value as Json};

/// Reads one component of a plan.
type Part = fn(&MemoryPlan) -> u64;

/// One context length the table shows.
struct Row {
    label: &'static str,
    seq: u64,
    eager: MemoryPlan,
    lazy: MemoryPlan,
    /// Device memory with every layer on a GPU (`--backend gpu`).
    gpu: DevicePlan,
}

pub fn render(
    file: &GgufFile,
    max_seq_len: Option<usize>,
    kv: KvDtype,
    as_json: bool,
) -> Result<String> {
    let planner = Planner::from_gguf(file).map_err(|e| anyhow!("cannot plan memory: {e}"))?;
    let shape = &planner.shape;
    let mut seqs: Vec<(&'static str, u64)> = Vec::new();
    match max_seq_len {
        Some(n) => seqs.push(("--max-seq-len", n as u64)),
        None => seqs.push(("default", memory::default_seq_len(shape))),
    }
    if seqs[0].1 != shape.context_length {
        seqs.push(("trained", shape.context_length));
    }
    let dw = DeviceWeights::from_gguf(file, shape.n_layer);
    let rows: Vec<Row> = seqs
        .into_iter()
        .map(|(label, seq)| Row {
            label,
            seq,
            eager: planner.plan(LoadMode::Eager, seq, kv),
            lazy: planner.plan(LoadMode::Lazy, seq, kv),
            gpu: device_plan(shape, &dw, None, seq, 1),
        })
        .collect();
    let runs = engine::supported_archs().contains(&shape.arch.as_str());
    let active_params = planner
        .weights
        .active_params(shape.n_expert_used, shape.n_expert);
    let available = memory::available_memory();
    let choice = memory::decide(&planner, LoadMode::Auto, rows[0].seq, kv, available.clone());
    if as_json {
        let plan = |p: &MemoryPlan| {
            json!({
                "weights_bytes": p.weights_bytes,
                "kv_bytes": p.kv_bytes,
                "scratch_bytes": p.scratch_bytes,
                "overhead_bytes": p.overhead_bytes,
                "total_bytes": p.total(),
            })
        };
        let contexts: Vec<Json> = rows
            .iter()
            .map(|r| {
                json!({
                    "context": r.label,
                    "max_seq_len": r.seq,
                    "eager": plan(&r.eager),
                    "lazy": plan(&r.lazy),
                    "gpu_device": {
                        "gpu_layers": r.gpu.gpu_layers,
                        "weights_bytes": r.gpu.weights_bytes,
                        "kv_bytes": r.gpu.kv_bytes,
                        "scratch_bytes": r.gpu.scratch_bytes,
                        "total_bytes": r.gpu.total(),
                    },
                    "kv_bytes_full_context": shape.kv_bytes(r.seq, kv),
                })
            })
            .collect();
        let obj = json!({
            "path": file.path().display().to_string(),
            "architecture": shape.arch,
            "architecture_supported": runs,
            "kv_dtype": kv_name(kv),
            "trained_context": shape.context_length,
            "sliding_window": shape.sliding_window,
            "sliding_window_layers": shape.swa_layers.iter().filter(|&&s| s).count(),
            "n_layers": shape.n_layer,
            "n_experts": shape.n_expert,
            "n_experts_used": shape.n_expert_used,
            "total_params": planner.weights.total_params,
            "active_params": active_params,
            "expert_bytes": planner.weights.expert_bytes,
            "active_expert_bytes": planner
                .weights
                .active_expert_bytes(shape.n_expert_used, shape.n_expert),
            "kv_per_token_bytes": shape.kv_bytes(1, kv),
            "contexts": contexts,
            "available_bytes": available.as_ref().map(|a| a.bytes),
            "available_source": available.as_ref().map(|a| a.source.clone()),
            "auto_choice": choice.as_ref().ok().map(|d| d.mode.as_str()),
            "auto_reason": match &choice {
                Ok(d) => d.reason.clone(),
                Err(e) => e.clone(),
            },
        });
        let mut s = serde_json::to_string_pretty(&obj)?;
        s.push('\n');
        return Ok(s);
    }
    let mut out = String::new();
    if !runs {
        out.push_str(&format!(
            "warning: architecture `{}` cannot run in torchless yet (supported: {}); the plan \
             below is what it would cost\n",
            shape.arch,
            engine::supported_archs().join(", ")
        ));
    }
    out += &format!(
        "memory plan for {} (KV cache {}, {} per token)\n",
        file.path().display(),
        kv_name(kv),
        fmt_bytes(shape.kv_bytes(1, kv))
    );
    if shape.n_expert > 0 {
        out.push_str(&format!(
            "parameters: {} total, {} active per token ({} of {} experts; expert weights {}, \
             {} read per token); lazy keeps one expert of a layer resident at a time\n",
            fmt_count(planner.weights.total_params),
            fmt_count(active_params),
            shape.n_expert_used,
            shape.n_expert,
            fmt_bytes(planner.weights.expert_bytes),
            fmt_bytes(
                planner
                    .weights
                    .active_expert_bytes(shape.n_expert_used, shape.n_expert)
            ),
        ));
    } else {
        out.push_str(&format!(
            "parameters: {}\n",
            fmt_count(planner.weights.total_params)
        ));
    }
    out.push_str(&format!(
        "  {:<22} {:>12} {:>12}\n",
        "context / part", "eager", "lazy"
    ));
    for r in &rows {
        out.push_str(&format!("  {} tokens ({})\n", r.seq, r.label));
        let parts: [(&str, Part); 5] = [
            ("weights", |p| p.weights_bytes),
            ("KV cache", |p| p.kv_bytes),
            ("scratch", |p| p.scratch_bytes),
            ("overhead", |p| p.overhead_bytes),
            ("total", |p| p.total()),
        ];
        for (name, get) in parts {
            out.push_str(&format!(
                "    {:<20} {:>12} {:>12}\n",
                name,
                fmt_bytes(get(&r.eager)),
                fmt_bytes(get(&r.lazy))
            ));
        }
        let g = &r.gpu;
        out.push_str(&format!(
            "    GPU device memory (all {} layers, f16 KV cache): weights {}, KV cache {}, \
             scratch {}, total {}\n",
            g.n_layer,
            fmt_bytes(g.weights_bytes),
            fmt_bytes(g.kv_bytes),
            fmt_bytes(g.scratch_bytes),
            fmt_bytes(g.total())
        ));
    }
    if shape.n_layer > 1 {
        let half = shape.n_layer / 2;
        let g = device_plan(shape, &dw, Some(half), rows[0].seq, 1);
        out.push_str(&format!(
            "--gpu-layers {half}: {} of device memory at {} tokens (the other layers and the \
             output on the CPU)\n",
            fmt_bytes(g.total()),
            rows[0].seq
        ));
    }
    let n_swa = shape.swa_layers.iter().filter(|&&s| s).count();
    if n_swa > 0 {
        let r = &rows[0];
        out.push_str(&format!(
            "sliding window: {n_swa} of {} layers attend to the last {} tokens only and keep a \
             ring of {} positions (window + one {}-token micro-batch, as llama.cpp): KV cache \
             {} instead of {} at {} tokens\n",
            shape.n_layer,
            shape.sliding_window,
            engine::inspect::windowed_slots(
                usize::try_from(r.seq).unwrap_or(usize::MAX),
                usize::try_from(shape.sliding_window).unwrap_or(usize::MAX),
                engine::inspect::DEFAULT_UBATCH
            ),
            engine::inspect::DEFAULT_UBATCH,
            fmt_bytes(r.eager.kv_bytes),
            fmt_bytes(shape.kv_bytes(r.seq, kv)),
            r.seq
        ));
    }
    if shape.n_expert > 0 {
        out.push_str(&format!(
            "mixture of experts: {} experts per layer, {} used per token; eager keeps all of \
             them resident\n",
            shape.n_expert, shape.n_expert_used
        ));
    }
    match (&available, &choice) {
        (Some(a), Ok(d)) => out.push_str(&format!(
            "available: {} ({}); --load auto would choose {}\n",
            fmt_bytes(a.bytes),
            a.source,
            d.reason
        )),
        (Some(a), Err(e)) => out.push_str(&format!(
            "available: {} ({}); loading would be refused: {e}\n",
            fmt_bytes(a.bytes),
            a.source
        )),
        (None, _) => out.push_str("available: unknown (no /proc/meminfo)\n"),
    }
    Ok(out)
}

fn kv_name(kv: KvDtype) -> &'static str {
    match kv {
        KvDtype::F16 => "f16",
        KvDtype::F32 => "f32",
    }
}

/// A parameter count as people write it: 135M, 1.2B.
fn fmt_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

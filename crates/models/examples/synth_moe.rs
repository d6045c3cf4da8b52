//! Writes a mixture-of-experts GGUF with random quantized weights at real dimensions, for
//! speed and memory work on the models people run (the weights are noise: only speed and
//! residency mean anything). Shapes:
//!
//! * `deepseek2-lite`: DeepSeek-V2-Lite (16B, 2.4B active): MLA (kv_lora_rank 512, rope 64,
//!   no q_lora), 27 layers, the first dense, then 64 routed experts (6 used) + 2 shared.
//! * `qwen2moe`: Qwen1.5-MoE-A2.7B: 24 layers, 60 experts (4 used) + a gated shared expert.
//!
//! ```text
//! cargo run --release -p torchless-models --example synth_moe -- TOKENIZER.gguf OUT.gguf \
//!     [deepseek2-lite|qwen2moe] [q4_k|q8_0|q4_0]
//! ```
//!
//! Matrices whose rows do not fit the type's 256-value super-blocks fall back as
//! llama-quantize does (Q4_K -> Q5_0, other K-quants -> Q8_0); the router, norms and biases
//! stay F32. Row data is drawn once per tensor shape and cycled, so a 9 GB file takes
//! seconds to write.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use gguf::{GgufFile, GgufWriter, Value};
use quant::GgmlType;

#[path = "common/noise.rs"]
mod noise;
use noise::Noise;

/// One tensor to write: name, ggml dims, type.
struct T {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
}

fn fallback(ty: GgmlType, cols: u64) -> GgmlType {
    if ty.row_bytes(cols).is_some() {
        return ty;
    }
    match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        _ => GgmlType::Q8_0,
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err(
            "usage: synth_moe TOKENIZER.gguf OUT.gguf [deepseek2-lite|qwen2moe] [q4_k|q8_0|q4_0]"
                .into(),
        );
    }
    let shape = args.get(2).map_or("deepseek2-lite", |s| s.as_str());
    let ty = match args.get(3).map_or("q4_k", |s| s.as_str()) {
        "q4_k" => GgmlType::Q4_K,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        other => return Err(format!("unknown type {other}")),
    };
    let src = GgufFile::open(&args[0]).map_err(|e| e.to_string())?;
    let n_vocab = src
        .metadata()
        .get_str_array("tokenizer.ggml.tokens")
        .map_err(|e| format!("{}: {e}", args[0]))?
        .len() as u64;
    let mut w = GgufWriter::new();
    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut tensors: Vec<T> = Vec::new();
    let n_embd = 2048u64;
    let mat = |name: String, cols: u64, rows: u64| T {
        name,
        ty: fallback(ty, cols),
        dims: vec![cols, rows],
    };
    let exps = |name: String, cols: u64, rows: u64, n: u64| T {
        name,
        ty: fallback(ty, cols),
        dims: vec![cols, rows, n],
    };
    let f32v = |name: String, n: u64| T {
        name,
        ty: GgmlType::F32,
        dims: vec![n],
    };
    let arch = match shape {
        "deepseek2-lite" => "deepseek2",
        "qwen2moe" => "qwen2moe",
        other => return Err(format!("unknown shape {other}")),
    };
    let u = |k: &str, v: u32| (format!("{arch}.{k}"), Value::U32(v));
    let f = |k: &str, v: f32| (format!("{arch}.{k}"), Value::F32(v));
    kv.push(("general.architecture".into(), Value::String(arch.into())));
    kv.push((
        "general.name".into(),
        Value::String(format!("synthetic-{shape}")),
    ));
    kv.push(u("embedding_length", n_embd as u32));
    kv.push(u("context_length", 4096));
    kv.push(f("attention.layer_norm_rms_epsilon", 1e-6));
    kv.push(u("vocab_size", n_vocab as u32));
    tensors.push(mat("token_embd.weight".into(), n_embd, n_vocab));
    match shape {
        "deepseek2-lite" => {
            let (n_layer, n_head, nope, rope, vh, kvr) =
                (27u64, 16u64, 128u64, 64u64, 128u64, 512u64);
            let (n_ff, n_exp, used, ff_exp, shared) = (10944u64, 64u64, 6u32, 1408u64, 2u64);
            for (k, v) in [
                ("block_count", n_layer as u32),
                ("feed_forward_length", n_ff as u32),
                ("attention.head_count", n_head as u32),
                ("attention.head_count_kv", 1),
                ("attention.key_length", (kvr + rope) as u32),
                ("attention.value_length", kvr as u32),
                ("attention.key_length_mla", (nope + rope) as u32),
                ("attention.value_length_mla", vh as u32),
                ("attention.q_lora_rank", 0),
                ("attention.kv_lora_rank", kvr as u32),
                ("rope.dimension_count", rope as u32),
                ("leading_dense_block_count", 1),
                ("expert_count", n_exp as u32),
                ("expert_used_count", used),
                ("expert_feed_forward_length", ff_exp as u32),
                ("expert_shared_count", shared as u32),
                ("expert_gating_func", 1),
            ] {
                kv.push(u(k, v));
            }
            kv.push(f("rope.freq_base", 10000.0));
            kv.push(f("expert_weights_scale", 1.0));
            kv.push((format!("{arch}.expert_weights_norm"), Value::Bool(false)));
            for l in 0..n_layer {
                let p = |s: &str| format!("blk.{l}.{s}");
                tensors.push(f32v(p("attn_norm.weight"), n_embd));
                tensors.push(mat(p("attn_q.weight"), n_embd, n_head * (nope + rope)));
                tensors.push(mat(p("attn_kv_a_mqa.weight"), n_embd, kvr + rope));
                tensors.push(f32v(p("attn_kv_a_norm.weight"), kvr));
                // Per-head k_b / v_b stay Q8_0, as llama-quantize leaves these small 3-D tensors.
                tensors.push(T {
                    name: p("attn_k_b.weight"),
                    ty: GgmlType::Q8_0,
                    dims: vec![nope, kvr, n_head],
                });
                tensors.push(T {
                    name: p("attn_v_b.weight"),
                    ty: GgmlType::Q8_0,
                    dims: vec![kvr, vh, n_head],
                });
                tensors.push(mat(p("attn_output.weight"), n_head * vh, n_embd));
                tensors.push(f32v(p("ffn_norm.weight"), n_embd));
                if l == 0 {
                    tensors.push(mat(p("ffn_gate.weight"), n_embd, n_ff));
                    tensors.push(mat(p("ffn_up.weight"), n_embd, n_ff));
                    tensors.push(mat(p("ffn_down.weight"), n_ff, n_embd));
                } else {
                    tensors.push(T {
                        name: p("ffn_gate_inp.weight"),
                        ty: GgmlType::F32,
                        dims: vec![n_embd, n_exp],
                    });
                    tensors.push(exps(p("ffn_gate_exps.weight"), n_embd, ff_exp, n_exp));
                    tensors.push(exps(p("ffn_up_exps.weight"), n_embd, ff_exp, n_exp));
                    tensors.push(exps(p("ffn_down_exps.weight"), ff_exp, n_embd, n_exp));
                    tensors.push(mat(p("ffn_gate_shexp.weight"), n_embd, ff_exp * shared));
                    tensors.push(mat(p("ffn_up_shexp.weight"), n_embd, ff_exp * shared));
                    tensors.push(mat(p("ffn_down_shexp.weight"), ff_exp * shared, n_embd));
                }
            }
        }
        _ => {
            let (n_layer, n_head, n_exp, used, ff_exp, ff_sh) =
                (24u64, 16u64, 60u64, 4u32, 1408u64, 5632u64);
            for (k, v) in [
                ("block_count", n_layer as u32),
                ("feed_forward_length", ff_sh as u32),
                ("attention.head_count", n_head as u32),
                ("attention.head_count_kv", n_head as u32),
                ("expert_count", n_exp as u32),
                ("expert_used_count", used),
                ("expert_feed_forward_length", ff_exp as u32),
                ("expert_shared_feed_forward_length", ff_sh as u32),
            ] {
                kv.push(u(k, v));
            }
            kv.push(f("rope.freq_base", 1_000_000.0));
            for l in 0..n_layer {
                let p = |s: &str| format!("blk.{l}.{s}");
                tensors.push(f32v(p("attn_norm.weight"), n_embd));
                for x in ["q", "k", "v"] {
                    tensors.push(mat(p(&format!("attn_{x}.weight")), n_embd, n_embd));
                    tensors.push(f32v(p(&format!("attn_{x}.bias")), n_embd));
                }
                tensors.push(mat(p("attn_output.weight"), n_embd, n_embd));
                tensors.push(f32v(p("ffn_norm.weight"), n_embd));
                tensors.push(T {
                    name: p("ffn_gate_inp.weight"),
                    ty: GgmlType::F32,
                    dims: vec![n_embd, n_exp],
                });
                tensors.push(exps(p("ffn_gate_exps.weight"), n_embd, ff_exp, n_exp));
                tensors.push(exps(p("ffn_up_exps.weight"), n_embd, ff_exp, n_exp));
                tensors.push(exps(p("ffn_down_exps.weight"), ff_exp, n_embd, n_exp));
                tensors.push(T {
                    name: p("ffn_gate_inp_shexp.weight"),
                    ty: GgmlType::F32,
                    dims: vec![n_embd],
                });
                tensors.push(mat(p("ffn_gate_shexp.weight"), n_embd, ff_sh));
                tensors.push(mat(p("ffn_up_shexp.weight"), n_embd, ff_sh));
                tensors.push(mat(p("ffn_down_shexp.weight"), ff_sh, n_embd));
            }
        }
    }
    tensors.push(f32v("output_norm.weight".into(), n_embd));
    tensors.push(mat("output.weight".into(), n_embd, n_vocab));
    for (k, v) in kv {
        w.add(k, v).map_err(|e| e.to_string())?;
    }
    for (k, v) in src.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w.add(k, v.clone()).map_err(|e| e.to_string())?;
        }
    }
    for t in &tensors {
        w.add_tensor_info(t.name.clone(), &t.dims, t.ty)
            .map_err(|e| e.to_string())?;
    }
    let out = File::create(&args[1]).map_err(|e| format!("{}: {e}", args[1]))?;
    let mut data = w.begin(BufWriter::new(out)).map_err(|e| e.to_string())?;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    // A pool of quantized rows per (type, cols), cycled.
    const POOL: u64 = 61;
    let mut pools: HashMap<(GgmlType, u64), Vec<u8>> = HashMap::new();
    let mut total = 0u64;
    for t in &tensors {
        let cols = t.dims[0];
        let rows: u64 = t.dims[1..].iter().product();
        let bytes: Vec<u8> = if t.dims.len() == 1 {
            // Norm weights 1; the shared-expert gate small noise.
            (0..cols)
                .flat_map(|_| {
                    let v = if t.name.contains("norm") {
                        1.0
                    } else {
                        noise.next(0.05)
                    };
                    v.to_le_bytes()
                })
                .collect()
        } else {
            let rb = t.ty.row_bytes(cols).unwrap() as usize;
            let pool = pools.entry((t.ty, cols)).or_insert_with(|| {
                let std = 1.0 / (cols as f32).sqrt();
                let mut out = vec![0u8; rb * POOL as usize];
                let mut row = vec![0f32; cols as usize];
                for r in 0..POOL as usize {
                    row.iter_mut().for_each(|v| *v = noise.next(std));
                    quant::quantize_row(t.ty, &row, &mut out[r * rb..(r + 1) * rb]).unwrap();
                }
                out
            });
            let mut b = Vec::with_capacity(rb * rows as usize);
            for r in 0..rows {
                let i = ((r * 7 + t.name.len() as u64) % POOL) as usize;
                b.extend_from_slice(&pool[i * rb..(i + 1) * rb]);
            }
            b
        };
        total += bytes.len() as u64;
        data.write_tensor(&bytes)
            .map_err(|e| format!("{}: {e}", t.name))?;
    }
    data.finish().map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} ({shape}, {ty}, {:.2} GB of tensor data, vocab {n_vocab})",
        args[1],
        total as f64 / 1e9
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

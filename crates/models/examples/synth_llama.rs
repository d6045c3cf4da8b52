//! Writes a LLaMA-architecture GGUF with random F16 weights and real tokenizer metadata, for
//! benchmarking at sizes the packaged models do not reach (the bandwidth-bound regime of
//! 1B+ models). The tokenizer keys are copied from an existing GGUF so every engine can load
//! it; the weights are noise, so only speed (not text) is meaningful.
//!
//!   cargo run --release -p torchless-models --example synth_llama -- TOKENIZER.gguf OUT.gguf \
//!       [n_embd 2048] [n_layer 16] [n_ff 8192] [n_head 32] [n_head_kv 8]
//!
//! Quantize the result with `llama-quantize` (scripts/make-bench-models.sh does).

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use gguf::{GgufFile, GgufWriter, Value};
use half::f16;
use quant::GgmlType;

#[path = "common/noise.rs"]
mod noise;
use noise::Noise;

fn arg(args: &[String], i: usize, default: u64) -> Result<u64, String> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("argument {i}: {s:?} is not a number")),
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err(
            "usage: synth_llama TOKENIZER.gguf OUT.gguf [n_embd n_layer n_ff n_head n_head_kv]"
                .into(),
        );
    }
    let n_embd = arg(&args, 2, 2048)?;
    let n_layer = arg(&args, 3, 16)?;
    let n_ff = arg(&args, 4, 8192)?;
    let n_head = arg(&args, 5, 32)?;
    let n_head_kv = arg(&args, 6, 8)?;
    if n_head == 0 || n_embd % n_head != 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err("n_embd must divide by n_head, and n_head by n_head_kv".into());
    }
    let head_dim = n_embd / n_head;
    let src = GgufFile::open(&args[0]).map_err(|e| e.to_string())?;
    let n_vocab = src
        .metadata()
        .get_str_array("tokenizer.ggml.tokens")
        .map_err(|e| format!("{}: {e}", args[0]))?
        .len() as u64;

    let mut w = GgufWriter::new();
    let mut put = |k: &str, v: Value| w.add(k, v).map_err(|e| e.to_string());
    put("general.architecture", Value::String("llama".into()))?;
    put(
        "general.name",
        Value::String(format!("synthetic-llama-{n_embd}x{n_layer}")),
    )?;
    put("general.file_type", Value::U32(1))?; // mostly F16

    // Llama 3.2's trained context, so that long-context benchmarks (depth 16384) run
    // inside it.
    put("llama.context_length", Value::U32(131072))?;
    put("llama.embedding_length", Value::U32(n_embd as u32))?;
    put("llama.block_count", Value::U32(n_layer as u32))?;
    put("llama.feed_forward_length", Value::U32(n_ff as u32))?;
    put("llama.attention.head_count", Value::U32(n_head as u32))?;
    put(
        "llama.attention.head_count_kv",
        Value::U32(n_head_kv as u32),
    )?;
    put("llama.rope.dimension_count", Value::U32(head_dim as u32))?;
    put("llama.rope.freq_base", Value::F32(500000.0))?;
    put("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))?;
    put("llama.vocab_size", Value::U32(n_vocab as u32))?;
    for (k, v) in src.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w.add(k, v.clone()).map_err(|e| e.to_string())?;
        }
    }

    // (name, [cols, rows], is_norm); the output matrix is tied to the embeddings.
    let mut tensors: Vec<(String, Vec<u64>, bool)> =
        vec![("token_embd.weight".into(), vec![n_embd, n_vocab], false)];
    let kv = head_dim * n_head_kv;
    for l in 0..n_layer {
        let p = format!("blk.{l}.");
        tensors.push((format!("{p}attn_norm.weight"), vec![n_embd], true));
        tensors.push((format!("{p}attn_q.weight"), vec![n_embd, n_embd], false));
        tensors.push((format!("{p}attn_k.weight"), vec![n_embd, kv], false));
        tensors.push((format!("{p}attn_v.weight"), vec![n_embd, kv], false));
        tensors.push((
            format!("{p}attn_output.weight"),
            vec![n_embd, n_embd],
            false,
        ));
        tensors.push((format!("{p}ffn_norm.weight"), vec![n_embd], true));
        tensors.push((format!("{p}ffn_gate.weight"), vec![n_embd, n_ff], false));
        tensors.push((format!("{p}ffn_up.weight"), vec![n_embd, n_ff], false));
        tensors.push((format!("{p}ffn_down.weight"), vec![n_ff, n_embd], false));
    }
    tensors.push(("output_norm.weight".into(), vec![n_embd], true));
    for (name, dims, norm) in &tensors {
        let ty = if *norm { GgmlType::F32 } else { GgmlType::F16 };
        w.add_tensor_info(name.clone(), dims, ty)
            .map_err(|e| e.to_string())?;
    }

    let out = File::create(&args[1]).map_err(|e| format!("{}: {e}", args[1]))?;
    let mut data = w.begin(BufWriter::new(out)).map_err(|e| e.to_string())?;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for (name, dims, norm) in &tensors {
        let n: u64 = dims.iter().product();
        let bytes: Vec<u8> = if *norm {
            (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else {
            // 1/sqrt(fan_in) keeps the residual stream from growing layer by layer.
            let std = 1.0 / (dims[0] as f32).sqrt();
            (0..n)
                .flat_map(|_| f16::from_f32(noise.next(std)).to_le_bytes())
                .collect()
        };
        data.write_tensor(&bytes)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    data.finish().map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} ({} layers, n_embd {n_embd}, n_ff {n_ff}, {n_head}/{n_head_kv} heads, vocab {n_vocab})",
        args[1], n_layer
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

//! Lazy loading of a mixture-of-experts model far larger than its memory budget: a
//! DeepSeek-V2-Lite-shaped file (real dimensions: MLA, 27 layers, 64 routed experts of which
//! 6 are used, 2 shared; ~8 GB of Q8_0 weights, written sparse so it costs almost no disk)
//! runs under a 1 GiB budget. Only the chosen experts' pages are ever touched and each is
//! given back after use, so peak RSS stays within the plan and far below the file.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Sparse;
use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use serde_json::Value as Json;

const N_EMBD: u64 = 2048;
const N_LAYER: u64 = 27;
const N_HEAD: u64 = 16;
const NOPE: u64 = 128;
const ROPE: u64 = 64;
const V_HEAD: u64 = 128;
const KV_LORA: u64 = 512;
const N_FF: u64 = 10944;
const N_EXP: u64 = 64;
const N_USED: u32 = 6;
const FF_EXP: u64 = 1408;
const N_SHARED: u64 = 2;

/// Deterministic noise in [-s, s).
fn noise(n: u64, seed: u64, s: f32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * s).to_le_bytes()
        })
        .collect()
}

/// Zero Q8_0 matrices (attention, experts), unit norms, random F32 embeddings and routers
/// (so tokens pick different experts), the fixture's tokenizer.
fn write_big(path: &Path) {
    let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/llama.gguf");
    let src = GgufFile::open(src_path).unwrap();
    let n_vocab = src.tensor("token_embd.weight").unwrap().dims[1];
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("deepseek2".into()))
        .unwrap();
    for (k, v) in [
        ("context_length", 4096u32),
        ("embedding_length", N_EMBD as u32),
        ("block_count", N_LAYER as u32),
        ("feed_forward_length", N_FF as u32),
        ("attention.head_count", N_HEAD as u32),
        ("attention.head_count_kv", 1),
        ("attention.key_length", (KV_LORA + ROPE) as u32),
        ("attention.value_length", KV_LORA as u32),
        ("attention.key_length_mla", (NOPE + ROPE) as u32),
        ("attention.value_length_mla", V_HEAD as u32),
        ("attention.q_lora_rank", 0),
        ("attention.kv_lora_rank", KV_LORA as u32),
        ("rope.dimension_count", ROPE as u32),
        ("leading_dense_block_count", 1),
        ("expert_count", N_EXP as u32),
        ("expert_used_count", N_USED),
        ("expert_feed_forward_length", FF_EXP as u32),
        ("expert_shared_count", N_SHARED as u32),
        ("expert_gating_func", 1),
    ] {
        w.add(format!("deepseek2.{k}"), Value::U32(v)).unwrap();
    }
    w.add(
        "deepseek2.attention.layer_norm_rms_epsilon",
        Value::F32(1e-6),
    )
    .unwrap();
    w.add("deepseek2.expert_weights_scale", Value::F32(1.0))
        .unwrap();
    for (k, v) in src.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w.add(k, v.clone()).unwrap();
        }
    }
    // (name, dims, type)
    let mut t: Vec<(String, Vec<u64>, GgmlType)> = vec![(
        "token_embd.weight".into(),
        vec![N_EMBD, n_vocab],
        GgmlType::F32,
    )];
    let q8 = GgmlType::Q8_0;
    for l in 0..N_LAYER {
        let p = |s: &str| format!("blk.{l}.{s}");
        t.push((p("attn_norm.weight"), vec![N_EMBD], GgmlType::F32));
        t.push((p("attn_q.weight"), vec![N_EMBD, N_HEAD * (NOPE + ROPE)], q8));
        t.push((p("attn_kv_a_mqa.weight"), vec![N_EMBD, KV_LORA + ROPE], q8));
        t.push((p("attn_kv_a_norm.weight"), vec![KV_LORA], GgmlType::F32));
        t.push((p("attn_k_b.weight"), vec![NOPE, KV_LORA, N_HEAD], q8));
        t.push((p("attn_v_b.weight"), vec![KV_LORA, V_HEAD, N_HEAD], q8));
        t.push((p("attn_output.weight"), vec![N_HEAD * V_HEAD, N_EMBD], q8));
        t.push((p("ffn_norm.weight"), vec![N_EMBD], GgmlType::F32));
        if l == 0 {
            t.push((p("ffn_gate.weight"), vec![N_EMBD, N_FF], q8));
            t.push((p("ffn_up.weight"), vec![N_EMBD, N_FF], q8));
            t.push((p("ffn_down.weight"), vec![N_FF, N_EMBD], q8));
        } else {
            let sh = FF_EXP * N_SHARED;
            t.push((p("ffn_gate_inp.weight"), vec![N_EMBD, N_EXP], GgmlType::F32));
            t.push((p("ffn_gate_exps.weight"), vec![N_EMBD, FF_EXP, N_EXP], q8));
            t.push((p("ffn_up_exps.weight"), vec![N_EMBD, FF_EXP, N_EXP], q8));
            t.push((p("ffn_down_exps.weight"), vec![FF_EXP, N_EMBD, N_EXP], q8));
            t.push((p("ffn_gate_shexp.weight"), vec![N_EMBD, sh], q8));
            t.push((p("ffn_up_shexp.weight"), vec![N_EMBD, sh], q8));
            t.push((p("ffn_down_shexp.weight"), vec![sh, N_EMBD], q8));
        }
    }
    t.push(("output_norm.weight".into(), vec![N_EMBD], GgmlType::F32));
    t.push(("output.weight".into(), vec![N_EMBD, n_vocab], q8));
    for (name, dims, ty) in &t {
        w.add_tensor_info(name.clone(), dims, *ty).unwrap();
    }
    let f = File::create(path).unwrap();
    let mut data = w.begin(Sparse { f, pos: 0 }).unwrap();
    for (i, (name, dims, ty)) in t.iter().enumerate() {
        let n: u64 = dims.iter().product();
        let bytes = if name.contains("norm") {
            (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else if *ty == GgmlType::F32 {
            noise(n, i as u64 + 1, 1.0)
        } else {
            // Zero blocks: calloc'd, so untouched pages cost nothing until checked.
            vec![0u8; ty.row_bytes(n).unwrap() as usize]
        };
        data.write_tensor(&bytes).unwrap();
    }
    let s = data.finish().unwrap();
    s.f.set_len(s.pos).unwrap();
}

#[test]
fn lazy_moe_model_far_larger_than_its_budget_touches_only_chosen_experts() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lazy-moe");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("deepseek2-lite-shaped-q8_0.gguf");
    write_big(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    let budget: u64 = 1 << 30;
    assert!(size > 6 * budget, "file of {size} bytes");

    let plan = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["info", path.to_str().unwrap(), "--memory", "--json"])
        .args(["--max-seq-len", "64"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Json = serde_json::from_slice(&plan.stdout).unwrap();
    let lazy_total = plan["contexts"][0]["lazy"]["total_bytes"].as_u64().unwrap();
    assert_eq!(plan["n_experts"], 64);
    assert_eq!(plan["n_experts_used"], 6);

    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--prompt-ids",
            "1,2,3,4,5,6,7,8",
            "-n",
            "3",
        ])
        .args(["--temp", "0", "--json", "--max-seq-len", "64"])
        .env("TORCHLESS_MEM_AVAILABLE", budget.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("load: lazy"), "{err}");
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["load"], "lazy");
    assert_eq!(j["generated_ids"].as_array().unwrap().len(), 3);
    let peak = j["peak_rss_bytes"].as_u64().unwrap();
    eprintln!(
        "file {:.0} MiB, lazy plan {:.0} MiB, lazy peak RSS {:.0} MiB",
        size as f64 / 1048576.0,
        lazy_total as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!(
        peak <= lazy_total + lazy_total / 10,
        "peak RSS {peak} above the lazy plan {lazy_total}"
    );
    assert!(peak < budget / 2, "peak RSS {peak} of a {size}-byte file");
}

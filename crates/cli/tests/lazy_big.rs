//! Lazy loading of a model far larger than the memory it is allowed: a synthetic 1.4 GB
//! llama (Q8_0, written sparse so it costs almost no disk) runs under a 512 MiB budget, and
//! its peak RSS stays a small fraction of the file.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Sparse;
use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use serde_json::Value as Json;

const N_EMBD: u64 = 2048;
const N_FF: u64 = 8192;
const N_LAYER: u64 = 20;

/// A llama with zero Q8_0 weights, unit norms and the fixture's tokenizer.
fn write_big(path: &Path) {
    let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/llama.gguf");
    let src = GgufFile::open(src_path).unwrap();
    let n_vocab = src.tensor("token_embd.weight").unwrap().dims[1];
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .unwrap();
    for (k, v) in [
        ("context_length", 256u32),
        ("embedding_length", N_EMBD as u32),
        ("block_count", N_LAYER as u32),
        ("feed_forward_length", N_FF as u32),
        ("attention.head_count", 16),
        ("attention.head_count_kv", 4),
    ] {
        w.add(format!("llama.{k}"), Value::U32(v)).unwrap();
    }
    w.add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .unwrap();
    for (k, v) in src.metadata().iter() {
        if k.starts_with("tokenizer.") {
            w.add(k, v.clone()).unwrap();
        }
    }
    let kv = 4 * (N_EMBD / 16);
    let mut tensors: Vec<(String, Vec<u64>)> =
        vec![("token_embd.weight".into(), vec![N_EMBD, n_vocab])];
    for l in 0..N_LAYER {
        let p = |s: &str| format!("blk.{l}.{s}");
        tensors.push((p("attn_norm.weight"), vec![N_EMBD]));
        tensors.push((p("attn_q.weight"), vec![N_EMBD, N_EMBD]));
        tensors.push((p("attn_k.weight"), vec![N_EMBD, kv]));
        tensors.push((p("attn_v.weight"), vec![N_EMBD, kv]));
        tensors.push((p("attn_output.weight"), vec![N_EMBD, N_EMBD]));
        tensors.push((p("ffn_norm.weight"), vec![N_EMBD]));
        tensors.push((p("ffn_gate.weight"), vec![N_EMBD, N_FF]));
        tensors.push((p("ffn_up.weight"), vec![N_EMBD, N_FF]));
        tensors.push((p("ffn_down.weight"), vec![N_FF, N_EMBD]));
    }
    tensors.push(("output_norm.weight".into(), vec![N_EMBD]));
    let is_norm = |dims: &[u64]| dims.len() == 1;
    for (name, dims) in &tensors {
        let ty = if is_norm(dims) {
            GgmlType::F32
        } else {
            GgmlType::Q8_0
        };
        w.add_tensor_info(name.clone(), dims, ty).unwrap();
    }
    let f = File::create(path).unwrap();
    let mut data = w.begin(Sparse { f, pos: 0 }).unwrap();
    for (_, dims) in &tensors {
        let n: u64 = dims.iter().product();
        let bytes = if is_norm(dims) {
            (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else {
            vec![0u8; GgmlType::Q8_0.row_bytes(n).unwrap() as usize]
        };
        data.write_tensor(&bytes).unwrap();
    }
    let s = data.finish().unwrap();
    s.f.set_len(s.pos).unwrap();
}

#[test]
fn lazy_model_larger_than_its_budget_stays_small() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lazy-big");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big-llama-q8_0.gguf");
    write_big(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    let budget: u64 = 512 << 20;
    assert!(size > 2 * budget, "file of {size} bytes");

    // auto under a 512 MiB budget: lazy, says why, and runs.
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--prompt-ids",
            "1,2,3,4",
            "-n",
            "2",
        ])
        .args(["--temp", "0", "--json", "--max-seq-len", "64"])
        .env("TORCHLESS_MEM_AVAILABLE", budget.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("load: lazy: eager would need"), "{err}");
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["load"], "lazy");
    assert_eq!(j["generated_ids"].as_array().unwrap().len(), 2);
    let peak = j["peak_rss_bytes"].as_u64().unwrap();
    eprintln!(
        "file {:.0} MiB, lazy peak RSS {:.0} MiB",
        size as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    // One layer is ~71 MB of this 1.4 GB file.
    assert!(peak < budget / 2, "peak RSS {peak} of a {size}-byte file");
    assert!(peak * 8 < size, "peak RSS {peak} of a {size}-byte file");
}

//! Memory planning and loading modes, run as a process: `info --memory`, `--load`, the
//! refusal when memory is short, and peak RSS of eager vs lazy loading on the real models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/data")
        .join(name)
}

fn torchless(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_torchless"));
    c.args(args).env_remove("TORCHLESS_MEM_AVAILABLE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run torchless")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_out(o: &Output) -> Json {
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn info_memory_json_follows_the_kv_formula() {
    let m = fixture("llama.gguf");
    let o = torchless(
        &[
            "info",
            m.to_str().unwrap(),
            "--memory",
            "--json",
            "--max-seq-len",
            "64",
        ],
        &[],
    );
    let j = json_out(&o);
    // 2 layers x 2 KV heads x (16 + 16) dims x 2 bytes.
    assert_eq!(j["kv_per_token_bytes"], 256);
    assert_eq!(j["trained_context"], 128);
    let ctx = j["contexts"].as_array().unwrap();
    assert_eq!(ctx.len(), 2, "--max-seq-len and trained: {j}");
    for (c, seq) in ctx.iter().zip([64u64, 128]) {
        assert_eq!(c["max_seq_len"], seq);
        for mode in ["eager", "lazy"] {
            let p = &c[mode];
            assert_eq!(p["kv_bytes"].as_u64().unwrap(), 256 * seq);
            let sum: u64 = [
                "weights_bytes",
                "kv_bytes",
                "scratch_bytes",
                "overhead_bytes",
            ]
            .iter()
            .map(|k| p[k].as_u64().unwrap())
            .sum();
            assert_eq!(p["total_bytes"].as_u64().unwrap(), sum);
        }
        assert!(c["eager"]["weights_bytes"].as_u64() > c["lazy"]["weights_bytes"].as_u64());
    }
    // f32 doubles the cache; the text table names both modes.
    let o = torchless(
        &[
            "info",
            m.to_str().unwrap(),
            "--memory",
            "--json",
            "--kv-dtype",
            "f32",
        ],
        &[],
    );
    assert_eq!(json_out(&o)["kv_per_token_bytes"], 512);
    let o = torchless(&["info", m.to_str().unwrap(), "--memory"], &[]);
    let t = text(&o.stdout);
    assert!(o.status.success());
    assert!(
        t.contains("eager") && t.contains("lazy") && t.contains("128 tokens (default)"),
        "{t}"
    );
}

#[test]
fn info_memory_reports_the_refusal_it_would_make() {
    let m = fixture("gemma3.gguf");
    let o = torchless(
        &["info", m.to_str().unwrap(), "--memory"],
        &[("TORCHLESS_MEM_AVAILABLE", "100K")],
    );
    let t = text(&o.stdout);
    assert!(
        t.contains("loading would be refused: not enough memory"),
        "{t}"
    );
    assert!(t.contains("sliding window: 1 of 2 layers"), "{t}");
}

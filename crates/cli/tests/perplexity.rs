//! End-to-end `torchless perplexity` against llama-perplexity's results on the GPL-3 text.

mod common;
use common::real_model;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gpl3() -> PathBuf {
    manifest().join("../engine/tests/data/GPL-3")
}

/// llama-perplexity's "Final estimate: PPL = X +/- Y" for `model` (golden file, first match).
fn golden(model: &str) -> (f64, f64) {
    let text =
        std::fs::read_to_string(manifest().join("tests/data/perplexity-gpl3-ctx256.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{model} ")))
        .unwrap();
    let rest = line.split("PPL = ").nth(1).unwrap();
    let mut it = rest.split(" +/- ");
    let ppl = it.next().unwrap().trim().parse().unwrap();
    let se = it.next().unwrap().trim().parse().unwrap();
    (ppl, se)
}

fn check(model: &str) {
    let path = real_model(model);
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["perplexity", path.to_str().unwrap()])
        .arg(gpl3())
        .args(["--ctx", "256", "--json"])
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (want, want_se) = golden(model);
    let ppl = v["ppl"].as_f64().unwrap();
    let se = v["ppl_stderr"].as_f64().unwrap();
    eprintln!("{model}: PPL {ppl:.4} +/- {se:.5} (llama.cpp {want} +/- {want_se}) in {secs:.1} s");
    assert!(
        (ppl - want).abs() / want < 0.01,
        "{model}: PPL {ppl} vs llama.cpp {want}"
    );
    assert!(
        (se - want_se).abs() / want_se < 0.05,
        "{model}: +/- {se} vs {want_se}"
    );
    // Per-window progress went to stderr, as llama-perplexity prints it.
    let n = v["n_chunks"].as_u64().unwrap();
    assert!(n > 10 && err.contains(&format!("[{n}]")), "{err}");
}

#[test]
fn smollm2_gpl3_perplexity_matches_llama_cpp() {
    check("smollm2-135m-instruct-q4_1");
}

#[test]
fn gemma3_gpl3_perplexity_matches_llama_cpp() {
    check("gemma3-270m-q4_k_m");
}

#[test]
fn text_shorter_than_two_windows_is_an_error() {
    let dir = std::env::temp_dir().join(format!("torchless-ppl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("short.txt");
    std::fs::write(&f, "the quick brown fox").unwrap();
    let model = manifest().join("tests/data/llama.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .arg("perplexity")
        .arg(&model)
        .arg(&f)
        .args(["--ctx", "16"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("need at least 32 tokens"), "{err}");
    assert!(
        err.contains("use --ctx "),
        "the --ctx that fits is suggested: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

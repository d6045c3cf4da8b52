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

/// Runs `torchless perplexity MODEL GPL-3 --ctx 256 --json [extra]`: (result, stderr, seconds).
fn measure(model: &str, extra: &[&str]) -> (Value, String, f64) {
    let path = real_model(model);
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["perplexity", path.to_str().unwrap()])
        .arg(gpl3())
        .args(["--ctx", "256", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (serde_json::from_slice(&out.stdout).unwrap(), err, secs)
}

/// Runs the whole text and holds the final estimate to llama-perplexity's (default batching)
/// within 1%; returns the JSON result.
fn check(model: &str) -> Value {
    let (v, err, secs) = measure(model, &[]);
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
    v
}

/// Whether this host runs the AVX-512 kernels (those of the reference build).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// llama-perplexity's running PPL after each window, run one window per batch.
fn golden_windows(model: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(
        manifest().join("tests/data/perplexity-gpl3-ctx256-one-window.txt"),
    )
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{model} ")))
        .unwrap();
    let runs = line.split(" Final").next().unwrap();
    runs.split(',')
        .filter_map(|w| w.split(']').nth(1))
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

/// Window by window, the running perplexity equals llama-perplexity's (run one window per
/// batch) to the 4 decimals it prints, where this build follows the same x86 AVX-512
/// kernels as the reference build; other hosts follow their own build's order, so there it
/// is held to 0.5%.
/// Holds the running perplexity after each of `chunks` windows to llama-perplexity's (run
/// one window per batch): to the 4 decimals it prints where this build follows the same x86
/// AVX-512 kernels as the reference build, within 0.5% on other hosts (their own order).
fn per_window(model: &str, v: &Value) {
    let want = golden_windows(model);
    let chunks: Vec<f64> = v["chunk_ppl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(!chunks.is_empty() && chunks.len() <= want.len());
    for (i, (got, want)) in chunks.iter().zip(&want).enumerate() {
        let ok = if avx512() {
            format!("{got:.4}") == format!("{want:.4}")
        } else {
            (got - want).abs() / want < 0.005
        };
        assert!(
            ok,
            "{model} window {}: running PPL {got:.4}, llama.cpp {want:.4}",
            i + 1
        );
    }
}

#[test]
fn smollm2_gpl3_perplexity_per_window_equals_llama_cpp() {
    let model = "smollm2-135m-instruct-q4_1";
    let v = check(model);
    per_window(model, &v);
}

/// The full-length comparison with llama.cpp is SmolLM2's (above); Gemma 3 scores the first
/// windows only (`--chunks`, a fifth of the run) to keep the suite short: each window's
/// running value as llama-perplexity's, and the last against the full-text value within a band.
#[test]
fn gemma3_gpl3_perplexity_first_windows() {
    let (v, err, secs) = measure("gemma3-270m-q4_k_m", &["--chunks", "6"]);
    let ppl = v["ppl"].as_f64().unwrap();
    let (want, _) = golden("gemma3-270m-q4_k_m");
    eprintln!("gemma3 first 6 windows: PPL {ppl:.4} (llama.cpp full text {want}) in {secs:.1} s");
    assert_eq!(v["n_chunks"], 6);
    assert_eq!(v["chunk_ppl"].as_array().unwrap().len(), 6);
    assert!(err.contains("[6]") && !err.contains("[7]"), "{err}");
    assert!(
        ppl > want / 2.0 && ppl < want * 2.0,
        "PPL {ppl} far from the full text's {want}"
    );
    per_window("gemma3-270m-q4_k_m", &v);
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

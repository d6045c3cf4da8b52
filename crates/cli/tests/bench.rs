//! End-to-end `torchless bench` on the tiny fixture: the JSON shape and positive rates (no
//! timing assertions), the table, and argument errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")
}

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn json_shape_and_positive_rates() {
    let model = fixture();
    let out = torchless(&[
        "bench",
        model.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "4",
        "-r",
        "2",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one JSON line: {stdout}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    for key in ["pp_tps", "tg_tps"] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
    }
    assert_eq!(v["threads"], 1);
    assert_eq!(v["repetitions"], 2);
    assert!(v["simd"].is_string());
    assert_eq!(v["model_name"], "llama.gguf");
    assert!(v["size_bytes"].as_u64().unwrap() > 0);
    for (test, n) in [("pp", 8), ("tg", 4)] {
        let t = &v[test];
        assert_eq!(t["n_tokens"], n);
        let runs = t["runs_tps"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r.as_f64().unwrap() > 0.0));
        assert!(t["stddev_tps"].as_f64().unwrap() >= 0.0);
        assert_eq!(t["mean_tps"], v[format!("{test}_tps")]);
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("warm-up"));
}

#[test]
fn table_and_skipped_test() {
    let model = fixture();
    let out = torchless(&[
        "bench",
        model.to_str().unwrap(),
        "-p",
        "4",
        "-n",
        "0",
        "-r",
        "1",
    ]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("| model | size | threads | test | t/s |"), "{s}");
    assert!(s.contains("| pp4 |"), "{s}");
    assert!(!s.contains("tg0"), "{s}");
}

/// `-d N` (llama-bench's depth): the tests start with N tokens in the cache, at every
/// repetition, and are named as llama-bench names them.
#[test]
fn depth_fills_the_cache_first() {
    let model = fixture();
    let m = model.to_str().unwrap();
    let out = torchless(&[
        "bench", m, "-p", "8", "-n", "4", "-r", "2", "-d", "40", "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["depth"], 40);
    assert!(v["tg_tps"].as_f64().unwrap() > 0.0);
    assert!(err.contains("filling the cache with 40 tokens"), "{err}");
    let out = torchless(&["bench", m, "-p", "8", "-n", "4", "-r", "1", "-d", "40"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("| pp8 @ d40 |") && s.contains("| tg4 @ d40 |"),
        "{s}"
    );
    // Far past the trained context: refused before anything runs (up to twice it, a
    // warning, as llama-bench runs there too).
    let out = torchless(&["bench", m, "-p", "8", "-n", "4", "-d", "1000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("twice the model's trained context"));
}

#[test]
fn rejects_bad_arguments() {
    let model = fixture();
    let m = model.to_str().unwrap();
    for args in [
        vec!["bench", m, "-r", "0"],
        vec!["bench", m, "-p", "0", "-n", "0"],
        vec!["bench", m, "--threads", "0"],
    ] {
        let out = torchless(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty());
    }
}

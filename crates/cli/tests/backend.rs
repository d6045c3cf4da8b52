//! `--backend` through the binary: a GPU run (on CI, Mesa's lavapipe: `.ci/run` installs
//! mesa-vulkan-drivers) computes the same greedy tokens as the CPU on the tiny llama fixture,
//! `bench` and `perplexity` run there too, and impossible choices are one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")
}

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> (String, String) {
    let o = torchless(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{args:?}: {err}");
    (out, err)
}

fn no_gpu_hint(err: &str) -> String {
    format!(
        "{err}\nthe GPU tests need a Vulkan device: apt-get install mesa-vulkan-drivers \
         (lavapipe, on the CPU) or a GPU driver"
    )
}

#[test]
fn a_gpu_run_gives_the_cpus_greedy_tokens() {
    let m = fixture();
    let m = m.to_str().unwrap();
    let args = [
        "run",
        m,
        "--prompt-ids",
        "1,5,9,13",
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
    ];
    let (cpu, _) = ok(&args);
    let o = torchless(&[&args[..], &["--backend", "vulkan"]].concat());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}", no_gpu_hint(&err));
    assert!(err.contains("backend: GPU"), "{err}");
    let ids = |s: &str| -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
        v["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&String::from_utf8_lossy(&o.stdout)), ids(&cpu));
    // llama.cpp's -ngl: the first layer on the GPU, the second and the output on the CPU.
    for flag in ["-ngl", "--gpu-layers"] {
        let o = torchless(&[&args[..], &["--backend", "vulkan", flag, "1"]].concat());
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{}", no_gpu_hint(&err));
        assert!(err.contains("1 of 2 layers, the rest on the CPU"), "{err}");
        assert_eq!(ids(&String::from_utf8_lossy(&o.stdout)), ids(&cpu));
    }
    // No layer on the GPU: the CPU's run.
    let (_, err) = ok(&[&args[..], &["--backend", "vulkan", "-ngl", "0"]].concat());
    assert!(err.contains("backend: CPU (--gpu-layers 0)"), "{err}");
}

/// Mixture-of-experts and latent-attention models run on the GPU (whole and with one layer
/// there), giving the CPU's greedy tokens on these fixtures.
#[test]
fn moe_and_mla_models_run_on_the_gpu() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data");
    for name in ["qwen2moe", "deepseek2-v3", "deepseek2-kvb"] {
        let m = data.join(format!("{name}.gguf"));
        let m = m.to_str().unwrap();
        let args = [
            "run",
            m,
            "--prompt-ids",
            "1,5,9,13",
            "-n",
            "8",
            "--temp",
            "0",
            "--json",
        ];
        let (cpu, _) = ok(&args);
        let last = |s: &str| -> serde_json::Value {
            let v: serde_json::Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
            v["generated_ids"].clone()
        };
        for extra in [
            &["--backend", "vulkan"][..],
            &["--backend", "vulkan", "-ngl", "1"],
        ] {
            let o = torchless(&[&args[..], extra].concat());
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(o.status.success(), "{name}: {}", no_gpu_hint(&err));
            assert!(err.contains("backend: GPU"), "{name}: {err}");
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(last(&out), last(&cpu), "{name} {extra:?}");
        }
    }
}

#[test]
fn bench_and_perplexity_run_on_the_gpu() {
    let m = fixture();
    let m = m.to_str().unwrap();
    let o = torchless(&[
        "bench",
        m,
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "--json",
        "--backend",
        "gpu",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}", no_gpu_hint(&err));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["backend"].as_str().unwrap().starts_with("GPU"), "{v}");
    assert!(v["tg_tps"].as_f64().unwrap() > 0.0);
    let text =
        std::env::temp_dir().join(format!("torchless-backend-ppl-{}.txt", std::process::id()));
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog ".repeat(40),
    )
    .unwrap();
    let t = text.to_str().unwrap();
    let ppl = |backend: &str| -> f64 {
        let (out, _) = ok(&[
            "perplexity",
            m,
            t,
            "--ctx",
            "64",
            "--chunks",
            "2",
            "--backend",
            backend,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        v["ppl"].as_f64().unwrap()
    };
    let (cpu, gpu) = (ppl("cpu"), ppl("vulkan"));
    assert!(
        (cpu - gpu).abs() <= 1e-2 * cpu,
        "perplexity {cpu} on the CPU, {gpu} on the GPU"
    );
    std::fs::remove_file(&text).ok();
}

#[test]
fn impossible_backends_are_one_line_errors() {
    let m = fixture();
    let m = m.to_str().unwrap();
    for (backend, want) in [
        ("tpu", "unknown backend"),
        ("metal", "macOS"),
        ("dx12", "Windows"),
    ] {
        let o = torchless(&[
            "run",
            m,
            "--prompt-ids",
            "1",
            "-n",
            "1",
            "--backend",
            backend,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{backend}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("error: ") && !l.contains("XDG"))
            .collect();
        assert!(
            lines.len() == 1 && lines[0].contains(want),
            "{backend}: {err}"
        );
    }
}

#[test]
fn info_lists_the_adapters() {
    let (out, _) = ok(&["info", "--backends"]);
    assert!(out.starts_with("cpu: always available"), "{out}");
    assert!(out.contains("gpu: "), "{}", no_gpu_hint(&out));
    let (json, _) = ok(&["info", "--backends", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(!v["adapters"].as_array().unwrap().is_empty());
}

//! Memory planning and loading modes, run as a process: `info --memory`, `--load`, the
//! refusal when memory is short, and peak RSS of eager vs lazy loading on the real models.

mod common;
use common::real_model;
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

/// `run --json` with greedy sampling; returns the parsed output.
fn run_json(model: &Path, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Json {
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        "--temp",
        "0",
        "--json",
        "--load",
        mode,
    ];
    args.extend_from_slice(extra);
    json_out(&torchless(&args, env))
}

fn ids(j: &Json) -> Vec<u64> {
    j["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn eager_and_lazy_give_identical_tokens_on_fixtures() {
    for f in [
        "llama.gguf",
        "qwen3.gguf",
        "gemma3.gguf",
        "phi3.gguf",
        "gptneox.gguf",
        "llama-moe.gguf",
        "qwen2moe.gguf",
    ] {
        let m = fixture(f);
        let args = ["--prompt-ids", "1,5,9,33,2,7", "-n", "12"];
        let eager = run_json(&m, "eager", &args, &[]);
        let lazy = run_json(&m, "lazy", &args, &[]);
        assert_eq!(eager["load"], "eager");
        assert_eq!(lazy["load"], "lazy");
        assert_eq!(ids(&eager), ids(&lazy), "{f}");
        assert_eq!(eager["steps"], lazy["steps"], "{f}: logprobs differ");
    }
}

#[test]
fn auto_says_what_it_chose_and_why() {
    let m = fixture("llama.gguf");
    let args = ["run", m.to_str().unwrap(), "--prompt-ids", "1,2", "-n", "1"];
    let o = torchless(&args, &[("TORCHLESS_MEM_AVAILABLE", "64G")]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("load: eager: ") && e.contains("TORCHLESS_MEM_AVAILABLE"),
        "{e}"
    );
    // Between the lazy and the eager need: lazy, with both figures.
    let j = json_out(&torchless(
        &["info", m.to_str().unwrap(), "--memory", "--json"],
        &[],
    ));
    let eager = j["contexts"][0]["eager"]["total_bytes"].as_u64().unwrap();
    let lazy = j["contexts"][0]["lazy"]["total_bytes"].as_u64().unwrap();
    let between = ((eager as f64 * 1.1) as u64).max(lazy).to_string();
    let o = torchless(&args, &[("TORCHLESS_MEM_AVAILABLE", &between)]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("load: lazy: eager would need"), "{e}");
    // An explicit mode says nothing.
    let mut explicit = args.to_vec();
    explicit.extend(["--load", "eager"]);
    let o = torchless(&explicit, &[]);
    assert!(!text(&o.stderr).contains("load:"), "{}", text(&o.stderr));
}

#[test]
fn refuses_when_even_lazy_cannot_fit() {
    let m = real_model("smollm2-135m-instruct-q4_1");
    let o = torchless(
        &[
            "run",
            m.to_str().unwrap(),
            "-p",
            "hi",
            "--kv-dtype",
            "f32",
            "--max-seq-len",
            "8192",
        ],
        &[("TORCHLESS_MEM_AVAILABLE", "150M")],
    );
    let e = text(&o.stderr);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(
        e.contains("error: not enough memory: even lazy loading needs about"),
        "{e}"
    );
    assert!(
        e.contains("but 150.0 MiB is available (TORCHLESS_MEM_AVAILABLE)"),
        "{e}"
    );
    assert!(e.contains("for 8192 tokens in f32"), "{e}");
    assert!(
        e.contains("--max-seq-len") && e.contains("--kv-dtype f16"),
        "{e}"
    );
    // The suggested context does load and run.
    let n: String = e
        .split("--max-seq-len ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let j = run_json(
        &m,
        "lazy",
        &[
            "--prompt-ids",
            "1,2,3",
            "-n",
            "2",
            "--kv-dtype",
            "f32",
            "--max-seq-len",
            &n,
        ],
        &[("TORCHLESS_MEM_AVAILABLE", "150M")],
    );
    assert_eq!(ids(&j).len(), 2);
}

/// Peak RSS of a generation that fills a 512-token context, and the planner's estimate.
fn measured_vs_planned(model: &Path, mode: &str) -> (f64, Json, Vec<u64>) {
    let prompt: Vec<String> = (0..480)
        .map(|i| (1000 + (i * 7) % 3000).to_string())
        .collect();
    let prompt = prompt.join(",");
    let j = run_json(
        model,
        mode,
        &["--prompt-ids", &prompt, "-n", "32", "--max-seq-len", "512"],
        &[],
    );
    let peak = j["peak_rss_bytes"].as_u64().expect("VmHWM on Linux") as f64;
    let plan = json_out(&torchless(
        &[
            "info",
            model.to_str().unwrap(),
            "--memory",
            "--json",
            "--max-seq-len",
            "512",
        ],
        &[],
    ));
    (peak, plan["contexts"][0][mode].clone(), ids(&j))
}

#[test]
fn peak_rss_matches_the_plan_and_lazy_keeps_weights_out() {
    for name in ["smollm2-135m-instruct-q4_1", "gemma3-270m-q4_k_m"] {
        let m = real_model(name);
        let (eager_peak, eager_plan, eager_ids) = measured_vs_planned(&m, "eager");
        let (lazy_peak, lazy_plan, lazy_ids) = measured_vs_planned(&m, "lazy");
        assert_eq!(eager_ids, lazy_ids, "{name}: eager and lazy tokens differ");
        let est = eager_plan["total_bytes"].as_u64().unwrap() as f64;
        let err = (eager_peak - est) / est;
        eprintln!(
            "{name}: eager peak {:.1} MiB, plan {:.1} MiB ({:+.1}%); lazy peak {:.1} MiB, plan {:.1} MiB",
            eager_peak / 1048576.0,
            est / 1048576.0,
            err * 100.0,
            lazy_peak / 1048576.0,
            lazy_plan["total_bytes"].as_f64().unwrap() / 1048576.0
        );
        assert!(
            err.abs() < 0.10,
            "{name}: eager peak {eager_peak} vs plan {est}"
        );
        // What lazy keeps of the weights: its peak minus everything that is not weights
        // (measured in the eager run as peak minus the weights it holds). The eager run has
        // just left the file in the page cache as large folios, the worst case for lazy: a
        // fault maps the whole folio, so small reads are released with their 2 MiB window
        // (`GgufFile::release_touched`). Measured: SmolLM2 lazy 66 MiB (plan 63), Gemma 3 141
        // (plan 127), the same with a cold cache; before that fix 90 and 180 when warm.
        let weights = eager_plan["weights_bytes"].as_f64().unwrap();
        let not_weights = eager_peak - weights;
        let lazy_weights = lazy_peak - not_weights;
        assert!(
            lazy_weights < 0.25 * weights,
            "{name}: lazy holds {lazy_weights} of {weights} weight bytes"
        );
        let lazy_est = lazy_plan["total_bytes"].as_f64().unwrap();
        let lazy_err = (lazy_peak - lazy_est) / lazy_est;
        assert!(
            (-0.15..0.15).contains(&lazy_err),
            "{name}: lazy peak {lazy_peak} vs plan {lazy_est}"
        );
    }
}

#[test]
fn info_memory_warns_first_when_the_architecture_cannot_run() {
    // The llama fixture relabelled as an architecture torchless does not run.
    let src = gguf::GgufFile::open(fixture("llama.gguf")).unwrap();
    let mut w = gguf::GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        let v = if k == "general.architecture" {
            gguf::Value::String("mamba".into())
        } else {
            v.clone()
        };
        w.add(k.replacen("llama.", "mamba.", 1), v).unwrap();
    }
    for t in src.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, src.tensor_data(t))
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!("torchless-mamba-{}.gguf", std::process::id()));
    w.write_file(&path).unwrap();
    let o = torchless(&["info", path.to_str().unwrap(), "--memory"], &[]);
    let t = text(&o.stdout);
    assert!(
        t.starts_with("warning: architecture `mamba` cannot run in torchless yet"),
        "{t}"
    );
    let o = torchless(&["info", path.to_str().unwrap(), "--memory", "--json"], &[]);
    let j = json_out(&o);
    assert_eq!(j["architecture_supported"], false);
    // A supported one says so too.
    let o = torchless(
        &[
            "info",
            fixture("llama.gguf").to_str().unwrap(),
            "--memory",
            "--json",
        ],
        &[],
    );
    assert_eq!(json_out(&o)["architecture_supported"], true);
    std::fs::remove_file(&path).ok();
}

#[test]
fn info_memory_counts_active_experts() {
    // llama-moe: 2 layers of 8 experts (gate/up/down 64x32 f32 each), 2 used per token.
    let m = fixture("llama-moe.gguf");
    let j = json_out(&torchless(
        &["info", m.to_str().unwrap(), "--memory", "--json"],
        &[],
    ));
    let expert_params = 2 * 8 * 3 * 64 * 32;
    assert_eq!(j["n_experts"], 8);
    assert_eq!(j["n_experts_used"], 2);
    assert_eq!(j["expert_bytes"], expert_params * 4);
    assert_eq!(j["active_expert_bytes"], expert_params * 4 / 4);
    let total = j["total_params"].as_u64().unwrap();
    assert_eq!(
        j["active_params"].as_u64().unwrap(),
        total - expert_params + expert_params / 4
    );
    let t = text(&torchless(&["info", m.to_str().unwrap(), "--memory"], &[]).stdout);
    assert!(t.contains("active per token (2 of 8 experts"), "{t}");
}

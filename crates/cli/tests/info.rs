//! `torchless info`, run as a process on fixture models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gguf::{split_path, GgmlType, GgufWriter, Value};
use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gguf/tests/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("info-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .output()
        .expect("run torchless")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs `info --json` and parses stdout, which must be exactly one JSON object.
fn info_json(model: &Path, extra: &[&str]) -> Json {
    let mut args = vec!["info", "--json"];
    args.extend_from_slice(extra);
    args.push(model.to_str().unwrap());
    let out = torchless(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let v: Json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{text}"));
    assert!(v.is_object());
    v
}

#[test]
fn json_for_the_llama_fixture() {
    let v = info_json(&fixture("llama-q8_0.gguf"), &[]);
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["architecture_supported"], true);
    assert_eq!(v["name"], "tiny-llama-q8_0");
    assert_eq!(v["gguf_version"], 3);
    assert_eq!(v["splits"], 1);
    assert_eq!(v["file_size_bytes"], 137280);
    assert_eq!(v["parameter_count"], 120128);
    assert_eq!(v["file_type"], "MOSTLY_Q8_0");
    assert_eq!(v["file_type_id"], 7);
    assert_eq!(v["context_length"], 128);
    let hp = &v["hyperparameters"];
    assert_eq!(hp["embedding_length"], 64);
    assert_eq!(hp["block_count"], 2);
    assert_eq!(hp["attention.head_count_kv"], 2);
    assert_eq!(hp["rope.freq_base"], 10000.0);
    assert_eq!(hp["attention.layer_norm_rms_epsilon"], 1e-5);
    assert_eq!(hp.as_object().unwrap().len(), 9);
    assert_eq!(v["tokenizer"]["model"], "gpt2");
    assert_eq!(v["tokenizer"]["pre"], "default");
    assert_eq!(v["tokenizer"]["vocab_size"], 360);
    assert_eq!(v["tokenizer"]["merges"], 100);
    assert_eq!(v["tokenizer"]["add_bos"], true);
    assert_eq!(v["tokenizer"]["add_eos"], false);
    assert_eq!(v["special_tokens"]["bos"]["id"], 356);
    assert_eq!(v["special_tokens"]["bos"]["text"], "<|bos|>");
    assert_eq!(v["special_tokens"]["eos"]["text"], "<|eos|>");
    assert!(v["special_tokens"].get("unk").is_none());
    assert_eq!(v["chat_template"], false);
    assert_eq!(v["tensor_count"], 21);
    assert_eq!(v["tensor_types"]["Q8_0"]["tensors"], 16);
    assert_eq!(v["tensor_types"]["F32"]["tensors"], 5);
    assert_eq!(v["tensor_types"]["F32"]["bytes"], 5 * 64 * 4);
    assert_eq!(v["unsupported_types"], Json::Array(vec![]));
    assert!(v.get("tensors").is_none());
}

#[test]
fn json_tensor_list() {
    let v = info_json(&fixture("llama-q8_0.gguf"), &["--tensors"]);
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 21);
    let emb = &tensors[0];
    assert_eq!(emb["name"], "token_embd.weight");
    assert_eq!(emb["type"], "Q8_0");
    assert_eq!(emb["shape"], serde_json::json!([64, 360]));
    assert_eq!(emb["size"], 360 * 2 * 34);
    assert_eq!(emb["split"], 0);
    assert_eq!(emb["offset"].as_u64().unwrap() % 32, 0);
    let total: u64 = tensors.iter().map(|t| t["size"].as_u64().unwrap()).sum();
    assert!(total < 137280);
}

#[test]
fn text_output_is_aligned_and_complete() {
    let out = torchless(&[
        "info",
        "--tensors",
        fixture("llama-q8_0.gguf").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    for line in [
        "architecture    llama (runs)",
        "parameters      120.13 K (120128)",
        "file type       MOSTLY_Q8_0 (7)",
        "context length  128",
        "gguf version    3",
        "  embedding_length                  64",
        "  attention.layer_norm_rms_epsilon  0.00001",
        "  vocab size     360",
        "  chat template  no",
        "  bos        356  \"<|bos|>\"",
        "tensors: 21",
        "  Q8_0        16 tensors    124.31 KiB",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    let header = text
        .lines()
        .find(|l| l.starts_with("name ") && l.contains("offset"))
        .expect("tensor table header");
    let row = text
        .lines()
        .find(|l| l.starts_with("blk.1.ffn_down.weight"))
        .expect("tensor row");
    // Columns line up: the size column ends where the header's does.
    assert_eq!(header.len(), row.len(), "{header}\n{row}");
    assert!(row.contains("Q8_0") && row.contains("[128, 64]"), "{row}");
    assert!(
        row.trim_end().ends_with(&(64 * 4 * 34).to_string()),
        "{row}"
    );
}

#[test]
fn unsupported_types_are_named() {
    // MXFP4 has no kernels yet: three small tensors of it.
    let model = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mxfp4-info.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("quantfixture".into()))
        .unwrap();
    let bytes = vec![0u8; 2 * 8 * 17];
    for name in ["a", "b", "c"] {
        w.add_tensor(name, &[256, 2], GgmlType::MXFP4, bytes.as_slice())
            .unwrap();
    }
    w.write_file(&model).unwrap();
    let v = info_json(&model, &[]);
    assert_eq!(v["unsupported_types"], serde_json::json!(["MXFP4"]));
    assert_eq!(v["architecture"], "quantfixture");
    assert_eq!(v["architecture_supported"], false);
    assert_eq!(v["tensor_types"]["MXFP4"]["tensors"], 3);
    assert_eq!(v["file_type"], Json::Null);
    let out = torchless(&["info", model.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("note: tensor type MXFP4 is not supported"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn split_models_are_reported_as_one() {
    let d = tmp("split");
    let prefix = d.join("tiny");
    for no in 0..2u32 {
        let mut w = GgufWriter::new();
        if no == 0 {
            w.add("general.architecture", Value::String("llama".into()))
                .unwrap();
            w.add("llama.context_length", Value::U32(256)).unwrap();
        }
        w.add("split.no", Value::U16(no as u16)).unwrap();
        w.add("split.count", Value::U16(2)).unwrap();
        w.add_tensor(format!("t{no}"), &[32, 2], GgmlType::F32, vec![0u8; 256])
            .unwrap();
        w.write_file(split_path(&prefix, no, 2)).unwrap();
    }
    let first = split_path(&prefix, 0, 2);
    let v = info_json(&first, &["--tensors"]);
    assert_eq!(v["splits"], 2);
    assert_eq!(v["tensor_count"], 2);
    assert_eq!(v["parameter_count"], 128);
    assert_eq!(v["context_length"], 256);
    assert_eq!(v["tensors"][1]["split"], 1);
    let on_disk: u64 = (0..2)
        .map(|n| std::fs::metadata(split_path(&prefix, n, 2)).unwrap().len())
        .sum();
    assert_eq!(v["file_size_bytes"], on_disk);
}

#[test]
fn malformed_file_fails_with_the_file_named() {
    let d = tmp("malformed");
    let bytes = std::fs::read(fixture("llama-q8_0.gguf")).unwrap();
    let bad = d.join("truncated.gguf");
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    let out = torchless(&["info", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(
        err.contains("`tokenizer.ggml.tokens`") && err.contains("truncated"),
        "{err}"
    );

    let missing = d.join("nope.gguf");
    let out = torchless(&["info", "--json", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("nope.gguf`: no such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_explains_the_commands() {
    let out = torchless(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("info") && text.contains("GGUF"), "{text}");
    let out = torchless(&["info", "--help"]);
    assert!(stdout(&out).contains("--tensors") && stdout(&out).contains("--json"));
    let out = torchless(&[]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit with 2");
}

/// A real model from `scripts/fetch-models.sh`; missing models fail the test on purpose.
fn real_model(name: &str) -> PathBuf {
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache/torchless")
        });
    let path = cache.join("models").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh first",
        path.display()
    );
    path
}

#[test]
fn real_smollm2_q4_1() {
    let v = info_json(&real_model("smollm2-135m-instruct-q4_1.gguf"), &[]);
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["file_type"], "MOSTLY_Q4_1");
    assert_eq!(v["parameter_count"], 134515008);
    assert_eq!(v["context_length"], 8192);
    assert_eq!(v["hyperparameters"]["embedding_length"], 576);
    assert_eq!(v["hyperparameters"]["block_count"], 30);
    assert_eq!(v["tokenizer"]["vocab_size"], 49152);
    assert_eq!(v["tokenizer"]["pre"], "smollm");
    assert_eq!(v["special_tokens"]["eos"]["text"], "<|im_end|>");
    assert_eq!(v["chat_template"], true);
    assert_eq!(v["tensor_count"], 272);
    assert_eq!(v["tensor_types"]["Q4_1"]["tensors"], 210);
    assert_eq!(v["file_size_bytes"], 98362432);
}

#[test]
fn real_gemma3_q4_k_m() {
    let v = info_json(&real_model("gemma3-270m-q4_k_m.gguf"), &[]);
    assert_eq!(v["architecture"], "gemma3");
    assert_eq!(v["file_type"], "MOSTLY_Q4_K_M");
    assert_eq!(v["context_length"], 32768);
    assert_eq!(v["hyperparameters"]["embedding_length"], 640);
    assert_eq!(v["hyperparameters"]["attention.sliding_window"], 512);
    assert_eq!(v["tokenizer"]["model"], "llama");
    assert_eq!(v["tokenizer"]["vocab_size"], 262144);
    assert_eq!(v["special_tokens"]["bos"]["text"], "<bos>");
    assert_eq!(v["chat_template"], false);
    assert_eq!(v["tensor_count"], 236);
    assert_eq!(v["unsupported_types"], Json::Array(vec![]));
}

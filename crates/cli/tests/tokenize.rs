//! `torchless tokenize` on the tiny fixture vocabulary (its README gives llama.cpp's ids).

use std::path::PathBuf;
use std::process::Command;

const SAMPLE: &str = "The quick brown fox jumps over the lazy dog. Once upon a time";
const SAMPLE_IDS: [u32; 36] = [
    356, 296, 32, 113, 117, 105, 99, 107, 307, 114, 111, 119, 110, 349, 32, 106, 117, 109, 112,
    115, 311, 258, 278, 97, 122, 121, 348, 46, 339, 297, 32, 117, 112, 305, 259, 312,
];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tokenizer/tests/data/llama.gguf")
}

fn torchless(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .output()
        .unwrap()
}

fn json_ids(out: &std::process::Output) -> Vec<u32> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON line expected: {stdout:?}"
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn json_ids_match_llama_cpp() {
    let model = fixture();
    let m = model.to_str().unwrap();
    assert_eq!(
        json_ids(&torchless(&["tokenize", m, SAMPLE, "--json"])),
        SAMPLE_IDS
    );
    assert_eq!(
        json_ids(&torchless(&["tokenize", m, SAMPLE, "--json", "--no-bos"])),
        SAMPLE_IDS[1..]
    );
}

#[test]
fn special_parsing_flag() {
    let model = fixture();
    let m = model.to_str().unwrap();
    assert_eq!(
        json_ids(&torchless(&[
            "tokenize", m, "a<|eos|>", "--json", "--no-bos"
        ])),
        [97, 357]
    );
    let plain = json_ids(&torchless(&[
        "tokenize",
        m,
        "a<|eos|>",
        "--json",
        "--no-bos",
        "--no-special",
    ]));
    assert!(!plain.contains(&357), "{plain:?}");
}

#[test]
fn table_lists_ids_and_pieces() {
    let model = fixture();
    let out = torchless(&["tokenize", model.to_str().unwrap(), "The quick"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0].trim(), "356 '<|bos|>'");
    assert_eq!(lines[2].trim(), "32 ' '");
    assert_eq!(*lines.last().unwrap(), "8 tokens");
}

#[test]
fn chat_renders_a_prompt() {
    let model = fixture();
    let out = torchless(&[
        "tokenize",
        model.to_str().unwrap(),
        "hi",
        "--chat",
        "--json",
    ]);
    let ids = json_ids(&out);
    assert_eq!(ids[0], 356);
    // The fixture (architecture llama, no template, no <|eot_id|>) falls back to
    // LLaMA 2's [INST] format; the prompt goes to stderr with --json.
    let prompt = String::from_utf8(out.stderr).unwrap();
    assert_eq!(prompt, "[INST] hi [/INST]\n");
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = torchless(&["tokenize", "/nonexistent/model.gguf", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("/nonexistent/model.gguf`: no such file"),
        "{err}"
    );
}

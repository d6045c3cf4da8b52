//! llama.cpp's own tokenizer tests (test-tokenizer-0): every `ggml-vocab-*.gguf`
//! with a `.gguf.inp` / `.gguf.out` pair, fetched by scripts/fetch-tokenizer-tests.sh.
//! Inputs are tokenized with add_special = false and parse_special = false.

mod common;

use std::path::{Path, PathBuf};

/// Vocabularies this crate does not tokenize, and why.
const SKIPPED: &[(&str, &str)] = &[(
    "bert-bge",
    "WordPiece (tokenizer.ggml.model = bert) is not supported",
)];

fn vocab_dir() -> PathBuf {
    let dir = common::cache_dir().join("llama-cpp-vocab");
    assert!(
        dir.join(".complete-11434.0.0").exists(),
        "llama.cpp tokenizer test data missing in {}: run scripts/fetch-tokenizer-tests.sh",
        dir.display()
    );
    dir
}

/// Test cases of one vocabulary: (input text, expected ids).
fn read_cases(inp: &Path) -> Vec<(String, Vec<u32>)> {
    let raw = std::fs::read_to_string(inp).unwrap();
    let out = std::fs::read_to_string(inp.with_extension("out")).unwrap();
    let mut inputs: Vec<String> = raw
        .split("\n__ggml_vocab_test__\n")
        .map(String::from)
        .collect();
    if raw.ends_with("\n__ggml_vocab_test__\n") || inputs.last().is_some_and(|s| s.is_empty()) {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: inputs vs outputs",
        inp.display()
    );
    inputs.into_iter().zip(outputs).collect()
}

#[test]
fn llama_cpp_vocab_tests() {
    let dir = vocab_dir();
    let mut inps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".gguf.inp"))
        .collect();
    inps.sort();
    let mut failures = Vec::new();
    let mut tested = Vec::new();
    for inp in &inps {
        let file = inp.file_name().unwrap().to_string_lossy().to_string();
        let name = file
            .trim_start_matches("ggml-vocab-")
            .trim_end_matches(".gguf.inp")
            .to_string();
        if let Some((_, why)) = SKIPPED.iter().find(|(n, _)| *n == name) {
            eprintln!("skipped {name}: {why}");
            continue;
        }
        let tok = common::load(&inp.with_extension(""));
        let cases = read_cases(inp);
        let mut bad = 0;
        for (text, want) in &cases {
            let got = tok.encode(text, false, false).unwrap();
            // Every byte survives: pieces put back together give the input
            // (SentencePiece adds its leading space).
            let joined: Vec<u8> = got
                .iter()
                .flat_map(|&id| tok.token_to_piece(id, true).unwrap())
                .collect();
            let prefix = if tok.add_space_prefix() && !text.is_empty() {
                " "
            } else {
                ""
            };
            if joined != format!("{prefix}{text}").as_bytes() {
                failures.push(format!(
                    "{name}: pieces of {text:?} give {:?}",
                    String::from_utf8_lossy(&joined)
                ));
            }
            if &got != want {
                bad += 1;
                if bad <= 3 {
                    failures.push(format!(
                        "{name}: {text:?}\n   want {want:?}\n    got {got:?}"
                    ));
                }
            }
        }
        if bad > 3 {
            failures.push(format!("{name}: ... {bad} of {} cases differ", cases.len()));
        }
        tested.push(format!("{name} ({} cases)", cases.len()));
    }
    eprintln!("tested: {}", tested.join(", "));
    assert!(
        tested.len() >= 12,
        "expected at least 12 vocabularies, tested {tested:?}"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

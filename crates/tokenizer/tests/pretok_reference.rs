//! Pre-tokenizer splits against llama.cpp's own splitter (src/unicode.cpp built
//! into a small driver, see tests/gen/gen_pretok_reference.py), for every
//! pre-tokenizer family, on text with mixed scripts, case, digits and spaces.

mod common;

use serde_json::Value;

#[test]
fn splits_match_llama_cpp() {
    let text = std::fs::read_to_string(common::data("pretok_reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let splits = reference["splits"].as_object().unwrap();
    assert!(splits.len() >= 16);
    let mut failures = Vec::new();
    for (pre, per_text) in splits {
        for (text, want) in texts.iter().zip(per_text.as_array().unwrap()) {
            let want: Vec<&str> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap())
                .collect();
            let got = tokenizer::pretokenize(pre, text).unwrap();
            if got != want {
                failures.push(format!(
                    "{pre}: {text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

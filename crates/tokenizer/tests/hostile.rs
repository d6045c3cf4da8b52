//! Hostile vocabularies and chat templates (issue 22): each is written into a GGUF file with
//! the crate's writer, read back, and must build (or fail with a one-line error) in linear
//! time; encode/decode of the result must not panic; templates that loop, recurse or grow
//! without limit are stopped with an error that says why.

use std::time::{Duration, Instant};

use gguf::{GgufFile, GgufWriter, Value};
use tokenizer::{render_chat, ChatMessage, Tokenizer};

fn strs(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// A vocabulary file: `model` (gpt2 or llama), `tokens`, `types` (1 normal, 3 control, ...),
/// `merges` for gpt2.
fn vocab_file(model: &str, tokens: &[String], types: &[i32], merges: &[String]) -> GgufFile {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add("tokenizer.ggml.model", Value::String(model.into()))
        .unwrap();
    w.add("tokenizer.ggml.pre", Value::String("default".into()))
        .unwrap();
    w.add("tokenizer.ggml.tokens", strs(tokens)).unwrap();
    w.add(
        "tokenizer.ggml.token_type",
        Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
    )
    .unwrap();
    if model == "llama" {
        w.add(
            "tokenizer.ggml.scores",
            Value::Array((0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect()),
        )
        .unwrap();
    }
    if !merges.is_empty() {
        w.add("tokenizer.ggml.merges", strs(merges)).unwrap();
    }
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    GgufFile::from_bytes(bytes).unwrap()
}

/// GPT-2 byte-level texts of the 256 bytes (the usual base of a BPE vocabulary).
fn byte_tokens() -> Vec<String> {
    let mut out = Vec::new();
    for b in 0u32..256 {
        let c = match b {
            0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => char::from_u32(b).unwrap(),
            _ => {
                let n = (0..b)
                    .filter(|&x| !matches!(x, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff))
                    .count() as u32;
                char::from_u32(256 + n).unwrap()
            }
        };
        out.push(c.to_string());
    }
    out
}

/// Builds, encodes and decodes within `limit`; returns the build error, if any.
fn exercise(f: &GgufFile, what: &str, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    let r = Tokenizer::from_gguf(f.metadata());
    let err = match &r {
        Ok(tok) => {
            // Encoding may fail (an SPM vocabulary without byte tokens), as one-line errors.
            match tok.encode("hello <|x|> world \u{1F600} \0", true, true) {
                Ok(ids) => {
                    let _ = tok.decode(&ids, true);
                }
                Err(e) => assert!(!e.to_string().contains('\n'), "{what}: {e}"),
            }
            let n = tok.vocab_size() as u32;
            for id in [0, 1, n / 2, n.saturating_sub(1), n, u32::MAX] {
                let _ = tok.token_to_piece(id, true);
            }
            None
        }
        Err(e) => Some(e.to_string()),
    };
    let took = t0.elapsed();
    assert!(took < limit, "{what}: took {took:?}");
    if let Some(e) = &err {
        assert!(!e.contains('\n') && !e.is_empty(), "{what}: {e:?}");
    }
    err
}

#[test]
fn megabyte_long_special_and_normal_tokens() {
    let long = "<|".to_string() + &"é".repeat(1 << 19) + "|>";
    for model in ["gpt2", "llama"] {
        let mut tokens = byte_tokens();
        let mut types = vec![1; tokens.len()];
        tokens.push(long.clone());
        types.push(3);
        tokens.push("\u{10FFFF}".repeat(1 << 18));
        types.push(1);
        tokens.push("<|x|>".into());
        types.push(3);
        let merges = vec!["h e".to_string()];
        let f = vocab_file(model, &tokens, &types, &merges);
        exercise(&f, model, Duration::from_secs(3));
    }
}

#[test]
fn many_special_tokens_and_a_large_vocabulary() {
    // 300k tokens, a third of them control tokens of growing length.
    let mut tokens = byte_tokens();
    let mut types = vec![1; tokens.len()];
    for i in 0..300_000 {
        tokens.push(format!("<|{}|>", "ab".repeat(i % 50) + &i.to_string()));
        types.push(if i % 3 == 0 { 3 } else { 1 });
    }
    let f = vocab_file("gpt2", &tokens, &types, &["a b".to_string()]);
    exercise(&f, "300k", Duration::from_secs(10));
}

#[test]
fn duplicate_tokens_are_refused_naming_them() {
    let mut tokens = byte_tokens();
    tokens.push("ab".into());
    tokens.push("ab".into());
    let types = vec![1; tokens.len()];
    let f = vocab_file("gpt2", &tokens, &types, &["a b".to_string()]);
    let e = exercise(&f, "dup", Duration::from_secs(1)).expect("duplicates accepted");
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("\"ab\""),
        "{e}"
    );
}

#[test]
fn empty_tokens_merges_of_missing_tokens_and_short_arrays() {
    let mut tokens = byte_tokens();
    tokens.extend(["".to_string(), "".to_string(), "he".to_string()]);
    let types = vec![1; tokens.len()];
    let merges: Vec<String> = ["h e", "x y", "nospace", " ", "", "he llo", "q\u{1F600} z"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let f = vocab_file("gpt2", &tokens, &types, &merges);
    assert!(exercise(&f, "empty+merges", Duration::from_secs(1)).is_none());
    // Fewer types than tokens, or no tokens at all: errors.
    let f = vocab_file("gpt2", &tokens, &types[..3], &merges);
    assert!(exercise(&f, "short types", Duration::from_secs(1)).is_some());
    let f = vocab_file("llama", &[], &[], &[]);
    assert!(exercise(&f, "empty", Duration::from_secs(1)).is_some());
}

#[test]
fn many_merges_with_long_sides() {
    let mut tokens = byte_tokens();
    let types = vec![1; tokens.len() + 1];
    tokens.push("x".repeat(1 << 16));
    let merges: Vec<String> = (0..2000)
        .map(|i| format!("{} {}", "x".repeat(1 << 10), "y".repeat(i)))
        .collect();
    let f = vocab_file("gpt2", &tokens, &types, &merges);
    exercise(&f, "long merges", Duration::from_secs(3));
}

fn render(template: &str) -> Result<String, String> {
    render_chat(template, &[ChatMessage::user("hi")], true, "<s>", "</s>")
        .map_err(|e| e.to_string())
}

#[test]
fn runaway_templates_are_stopped_saying_why() {
    // (Templates that grow values exponentially are stopped by the allocator guard, which
    // exits the process: tested through the CLI in `crates/cli/tests/hostile.rs`.)
    let cases = [
        // Nested loops that never finish in practice.
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}",
        // Unbounded recursion.
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // Huge output from a small loop.
        "{% for i in range(100000) %}{{ 'y' * 10000 }}{% endfor %}",
        // Huge JSON indentation.
        "{{ messages|tojson(indent=1000000000) }}",
        // minijinja's own cap on string repetition.
        "{{ 'ab' * 1000000000 }}",
    ];
    for t in cases {
        let t0 = Instant::now();
        let r = render(t);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "{t}: took {took:?}");
        match r {
            Ok(s) => assert!(s.len() <= 16 << 20, "{t}: {} bytes of output", s.len()),
            Err(e) => {
                assert!(!e.contains('\n'), "{t}: {e}");
                assert!(e.contains("stopped") || e.contains("too large"), "{t}: {e}");
            }
        }
    }
}

#[test]
fn ordinary_templates_still_render() {
    let t = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    assert_eq!(render(t).unwrap(), "<|user|>hi<|assistant|>");
}

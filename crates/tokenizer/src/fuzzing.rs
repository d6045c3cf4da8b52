//! The properties checked by the `vocab` and `template` fuzz targets (`fuzz/fuzz_targets/`)
//! and by the seed-corpus test in normal `cargo test`: building a tokenizer from arbitrary
//! vocabularies, then encoding and decoding with it, and rendering arbitrary chat templates,
//! never panic; errors are one line.

use crate::{render_chat_json, ChatOptions, Tokenizer, TokenizerConfig};

/// A vocabulary from `data`: byte 0 picks the model (gpt2 / llama) and flags, then
/// `\n`-separated items: tokens until an empty item, then merges; each token's type is a byte
/// of the input after the last item. The last item is also the text encoded.
pub fn check_vocab(data: &[u8]) -> bool {
    let Some((&head, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    let items: Vec<&str> = text.split('\n').collect();
    let split = items
        .iter()
        .position(|s| s.is_empty())
        .unwrap_or(items.len());
    let tokens: Vec<String> = items[..split].iter().map(|s| s.to_string()).collect();
    let merges: Vec<String> = items
        .get(split + 1..)
        .unwrap_or(&[])
        .iter()
        .map(|s| s.to_string())
        .collect();
    let types: Vec<i32> = rest
        .iter()
        .rev()
        .take(tokens.len())
        .map(|&b| i32::from(b % 8))
        .collect();
    let n = tokens.len();
    let cfg = TokenizerConfig {
        model: if head & 1 == 0 { "gpt2" } else { "llama" }.into(),
        pre: Some(
            ["default", "llama3", "qwen2", "gpt-2", "smollm"][usize::from(head >> 1) % 5].into(),
        ),
        scores: (head & 8 != 0).then(|| (0..n).map(|i| -(i as f32)).collect()),
        token_types: (types.len() == n && head & 16 != 0).then_some(types),
        tokens,
        merges,
        bos: Some(u32::from(head)),
        eos: Some(1),
        add_bos: Some(head & 32 != 0),
        ..Default::default()
    };
    match Tokenizer::new(cfg) {
        Ok(tok) => {
            let input = items.last().copied().unwrap_or("");
            for (add, special) in [(true, true), (false, false)] {
                match tok.encode(input, add, special) {
                    Ok(ids) => {
                        let _ = tok.decode(&ids, true);
                        let _ = tok.decode(&ids, false);
                    }
                    Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
                }
            }
            for id in [0, 1, n as u32 / 2, n as u32, u32::MAX] {
                let _ = tok.token_to_piece(id, true);
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "{e}");
            false
        }
    }
}

/// Renders `data` (as UTF-8, lossily) as a chat template over a small conversation.
/// Templates that grow values exponentially are stopped by the allocator guard of
/// [`crate::chat_guard`], which the fuzz target installs (abandon mode, a small budget); under
/// `cargo test` without the guard, the corpus holds no such template.
pub fn check_template(data: &[u8]) -> bool {
    let t = String::from_utf8_lossy(data);
    let msgs = r#"[{"role":"system","content":"s"},{"role":"user","content":"hi"},{"role":"assistant","content":"a","tool_calls":[{"function":{"name":"f","arguments":{"x":1}}}]},{"role":"user","content":"again"}]"#;
    let opts = ChatOptions {
        add_generation_prompt: true,
        bos_token: "<s>",
        eos_token: "</s>",
        tools: Some(r#"[{"type":"function","function":{"name":"f","parameters":{}}}]"#),
        extra: None,
        now_unix: Some(0),
    };
    match render_chat_json(&t, msgs, &opts) {
        Ok(out) => {
            assert!(out.len() <= crate::chat::MAX_OUTPUT_BYTES.max(t.len() * 4));
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

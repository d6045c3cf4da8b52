//! The tiny fixture vocabulary shared by every architecture fixture
//! (360 tokens, pre-tokenizer "default"); expected ids from llama.cpp.

mod common;

use tokenizer::{attr, TokenizerKind};

const SAMPLE: &str = "The quick brown fox jumps over the lazy dog. Once upon a time";
const SAMPLE_IDS: [u32; 36] = [
    356, 296, 32, 113, 117, 105, 99, 107, 307, 114, 111, 119, 110, 349, 32, 106, 117, 109, 112,
    115, 311, 258, 278, 97, 122, 121, 348, 46, 339, 297, 32, 117, 112, 305, 259, 312,
];

#[test]
fn sample_text_matches_llama_cpp() {
    let tok = common::load(&common::data("llama.gguf"));
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.pre(), "default");
    assert_eq!(tok.vocab_size(), 360);
    assert_eq!((tok.bos(), tok.eos()), (Some(356), Some(357)));
    assert!(tok.add_bos());
    assert_eq!(tok.encode(SAMPLE, true, false).unwrap(), SAMPLE_IDS);
    assert_eq!(tok.encode(SAMPLE, false, false).unwrap(), SAMPLE_IDS[1..]);
    assert_eq!(tok.decode(&SAMPLE_IDS[1..], false).unwrap(), SAMPLE);
    assert_eq!(
        tok.decode(&SAMPLE_IDS, true).unwrap(),
        format!("<|bos|>{SAMPLE}")
    );
    assert_eq!(tok.decode(&SAMPLE_IDS, false).unwrap(), SAMPLE);
}

#[test]
fn special_tokens_by_type() {
    let tok = common::load(&common::data("llama.gguf"));
    assert_eq!(tok.token_attr(356).unwrap(), attr::CONTROL);
    assert_eq!(tok.token_attr(358).unwrap(), attr::USER_DEFINED);
    // Control tokens are parsed only on request ...
    assert_eq!(tok.encode("a<|eos|>", false, true).unwrap(), [97, 357]);
    let plain = tok.encode("a<|eos|>", false, false).unwrap();
    assert!(!plain.contains(&357), "{plain:?}");
    // ... user-defined ones always, as in llama.cpp.
    assert_eq!(
        tok.encode("<think>hi</think>", false, false).unwrap()[0],
        358
    );
    assert_eq!(
        *tok.encode("<think>hi</think>", false, false)
            .unwrap()
            .last()
            .unwrap(),
        359
    );
    assert!(tok.is_eog(357));
    assert!(!tok.is_eog(356));
    assert_eq!(tok.eog_ids(), [357]);
    assert_eq!(tok.token_to_piece(357, false).unwrap(), b"");
    assert_eq!(tok.token_to_piece(357, true).unwrap(), b"<|eos|>");
    assert_eq!(tok.token_to_piece(32, false).unwrap(), b" ");
}

#[test]
fn out_of_range_ids_are_errors() {
    let tok = common::load(&common::data("llama.gguf"));
    assert!(tok.token_to_piece(360, true).is_err());
    assert!(tok.decode(&[1, 2, 99_999], true).is_err());
    assert!(tok.token_text(u32::MAX).is_err());
    let mut d = tokenizer::StreamDecoder::new(true);
    assert!(d.push(&tok, 360).is_err());
}

#[test]
fn every_byte_round_trips() {
    let tok = common::load(&common::data("llama.gguf"));
    let text: String =
        (1u32..0x800).filter_map(char::from_u32).collect::<String>() + "😀👍🏽 e\u{301}";
    let ids = tok.encode(&text, false, false).unwrap();
    let mut bytes = Vec::new();
    for &id in &ids {
        bytes.extend(tok.token_to_piece(id, false).unwrap());
    }
    assert_eq!(String::from_utf8(bytes).unwrap(), text);
    // decode() applies clean_up_tokenization_spaces (" !" -> "!") for this vocabulary.
    assert!(!tok.decode(&ids, false).unwrap().contains(" !"));
}

#[test]
fn thinking_tags_and_chat_prompt_bos() {
    let tok = common::load(&common::data("llama.gguf"));
    assert_eq!(tok.thinking_tags(), Some((358, 359)));
    // A template that writes BOS itself: the prompt keeps a single BOS.
    let prompt = tokenizer::render_chat(
        "{{ bos_token }}{{ messages[0].content }}",
        &[tokenizer::ChatMessage::user("The")],
        false,
        "<|bos|>",
        "<|eos|>",
    )
    .unwrap();
    assert_eq!(prompt, "<|bos|>The");
    assert_eq!(tok.encode(&prompt, true, true).unwrap(), [356, 356, 296]);
    assert_eq!(tok.encode_chat_prompt(&prompt).unwrap(), [356, 296]);
    assert_eq!(tok.encode_chat_prompt("The").unwrap(), [356, 296]);
}

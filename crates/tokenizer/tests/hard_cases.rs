//! Edge cases on the real vocabularies and the fixture: whitespace runs, digits,
//! CJK, emoji with modifiers, combining marks, long words, empty input, bad ids,
//! and bad metadata. Throughput on large inputs is measured in benches/encode.rs.

mod common;

use tokenizer::{Tokenizer, TokenizerConfig, TokenizerError};

const HARD: &[&str] = &[
    "",
    " ",
    "   ",
    "\t",
    "\n",
    " \n \n\n\t \t\t\n",
    "  leading and trailing  ",
    "multiple     spaces\there",
    "123 4567 89012345 ½ ² ٣",
    "日本語のテキスト、東京。中文字符",
    "emoji 👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷",
    "combining e\u{301} a\u{308}\u{304} ñ vs n\u{303}",
    "I'm you're they'LL it's Y'ALL",
    "<|im_start|> <start_of_turn> <bos> </s> <think>",
    "mixed\r\nline\rendings\n",
    "\u{200b}zero\u{feff}width\u{00a0}nbsp\u{3000}ideographic",
    "\u{10FFFF}\u{E000} private and last codepoints",
];

fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    ids.iter()
        .flat_map(|&id| tok.token_to_piece(id, true).unwrap())
        .collect()
}

#[test]
fn smollm2_pieces_reassemble_the_input() {
    let tok = common::load(&common::model("smollm2-135m-instruct-q4_1.gguf"));
    for &s in HARD {
        // Special-token texts stay plain text here, so every byte must come back.
        let ids = tok.encode(s, false, false).unwrap();
        assert_eq!(String::from_utf8(pieces(&tok, &ids)).unwrap(), s, "{s:?}");
        // smollm does not clean up spaces, so decode is lossless too.
        assert_eq!(tok.decode(&ids, false).unwrap(), s, "{s:?}");
    }
    assert_eq!(tok.encode("", true, true).unwrap(), Vec::<u32>::new());
}

#[test]
fn gemma3_pieces_reassemble_the_input() {
    let tok = common::load(&common::model("gemma3-270m-q4_k_m.gguf"));
    assert!(!tok.add_space_prefix());
    for &s in HARD {
        let ids = tok.encode(s, false, false).unwrap();
        assert_eq!(String::from_utf8(pieces(&tok, &ids)).unwrap(), s, "{s:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), s, "{s:?}");
    }
    // Empty text with add_special: just BOS, as llama.cpp.
    assert_eq!(tok.encode("", true, true).unwrap(), [2]);
    // Byte fallback: a codepoint without a token becomes its UTF-8 bytes.
    assert_eq!(tok.token_id("\u{10FFFD}"), None);
    let ids = tok.encode("\u{10FFFD}", false, false).unwrap();
    let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["<0xF4>", "<0x8F>", "<0xBF>", "<0xBD>"]);
}

#[test]
fn special_tokens_only_when_parsed() {
    let tok = common::load(&common::model("smollm2-135m-instruct-q4_1.gguf"));
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let parsed = tok.encode("<|im_start|>user", false, true).unwrap();
    assert_eq!(parsed[0], im_start);
    let plain = tok.encode("<|im_start|>user", false, false).unwrap();
    assert!(!plain.contains(&im_start), "{plain:?}");
    assert_eq!(tok.decode(&parsed, false).unwrap(), "user");
    assert_eq!(tok.decode(&parsed, true).unwrap(), "<|im_start|>user");
}

#[test]
fn stream_decoder_matches_decode_on_split_characters() {
    let tok = common::load(&common::model("smollm2-135m-instruct-q4_1.gguf"));
    let text = "naïve 東京 🚀 emojis 👍🏽<|im_end|>";
    let ids = tok.encode(text, false, true).unwrap();
    let mut d = tokenizer::StreamDecoder::new(false);
    let mut out = String::new();
    for &id in &ids {
        let chunk = d.push(&tok, id).unwrap();
        assert!(
            !chunk.contains('\u{FFFD}'),
            "partial character leaked: {chunk:?}"
        );
        out.push_str(&chunk);
    }
    assert!(!d.has_pending());
    assert_eq!(out, "naïve 東京 🚀 emojis 👍🏽");
    let mut shown = tokenizer::StreamDecoder::new(true);
    let all: String = ids
        .iter()
        .map(|&id| shown.push(&tok, id).unwrap())
        .collect();
    assert_eq!(all, text);
}

fn tiny_config() -> TokenizerConfig {
    TokenizerConfig {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens: vec!["a".into(), "b".into(), "ab".into()],
        merges: vec!["a b".into()],
        ..Default::default()
    }
}

#[test]
fn bad_configurations_are_errors() {
    let tok = Tokenizer::new(tiny_config()).unwrap();
    assert_eq!(tok.encode("abab", false, false).unwrap(), [2, 2]);
    // No default BOS/EOS in a 3-token vocabulary (llama.cpp's default id 11 is out of range).
    assert_eq!(tok.bos(), None);

    let mut c = tiny_config();
    c.model = "bert".into();
    match Tokenizer::new(c) {
        Err(TokenizerError::UnsupportedModel(m)) => assert_eq!(m, "bert"),
        other => panic!("{other:?}"),
    }
    let mut c = tiny_config();
    c.merges.clear();
    assert!(matches!(
        Tokenizer::new(c),
        Err(TokenizerError::Metadata(_))
    ));
    let mut c = tiny_config();
    c.token_types = Some(vec![1]);
    assert!(matches!(
        Tokenizer::new(c),
        Err(TokenizerError::Metadata(_))
    ));
    let mut c = tiny_config();
    c.tokens.clear();
    assert!(matches!(
        Tokenizer::new(c),
        Err(TokenizerError::Metadata(_))
    ));
    // add_bos without a BOS token: an error, not a panic.
    let mut c = tiny_config();
    c.add_bos = Some(true);
    let tok = Tokenizer::new(c).unwrap();
    assert!(matches!(
        tok.encode("a", true, false),
        Err(TokenizerError::MissingSpecial("BOS"))
    ));
    // Unknown pre-tokenizer: falls back to "default" (with a warning on stderr).
    let mut c = tiny_config();
    c.pre = Some("no-such-pre".into());
    assert_eq!(Tokenizer::new(c).unwrap().pre(), "default");
}

#[test]
fn metadata_without_tokenizer_is_an_error() {
    let md = gguf::Metadata::new();
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
}

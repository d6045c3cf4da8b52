//! Conversations on the tiny llama fixture: the KV cache is reused across turns (and gives the
//! same tokens as recomputing everything), and the fixture vocabulary's `<think>`/`</think>`
//! tokens drive the thinking splitter.

use std::path::PathBuf;

use engine::{
    Conversation, GenerateOptions, LoadedModel, SamplingParams, Segment, SessionOptions,
    ThinkingSplitter,
};

fn fixture() -> LoadedModel {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/llama.gguf");
    LoadedModel::load(p).unwrap()
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(n),
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

fn answer(s: &mut engine::Session, ids: &[u32], n: usize) -> (Vec<u32>, String, usize) {
    let mut out = Vec::new();
    let mut text = String::new();
    let st = s
        .generate_with(ids, &greedy(n), |e| {
            out.push(e.id);
            text.push_str(&e.text);
        })
        .unwrap();
    (out, text, st.prompt_tokens)
}

#[test]
fn second_turn_reuses_the_cache_and_matches_a_fresh_run() {
    let lm = fixture();
    let opts = SessionOptions::default();
    let mut s = lm.new_session(&opts).unwrap();
    let mut conv = Conversation::new(Some("You tell stories.".into()));
    conv.push_user("Once upon a time");
    let p1 = lm.prepare_turn(&mut s, &conv).unwrap();
    assert_eq!((p1.skip, p1.reused), (0, 0));
    let (_, text1, fed1) = answer(&mut s, p1.new_ids(), 6);
    assert_eq!(fed1, p1.ids.len());
    conv.push_assistant(text1.clone(), None);
    conv.push_user("The quick brown fox");

    let p2 = lm.prepare_turn(&mut s, &conv).unwrap();
    assert!(p2.text.starts_with(&p1.text), "turn 2 extends turn 1");
    // The whole first prompt stays in the cache; only the rest is processed. (The fixture's
    // answer is random bytes, rendered back as U+FFFD after a space the [INST] fallback
    // template adds, so it re-tokenizes differently and is recomputed; the real-model test in
    // the cli crate shows a whole answer reused.)
    assert_eq!(p2.reused, p1.ids.len());
    assert_eq!(p2.ids[..p1.ids.len()], p1.ids[..]);
    let (ids2, text2, fed2) = answer(&mut s, p2.new_ids(), 6);
    assert_eq!(fed2 + p2.reused, p2.ids.len());
    assert!(fed2 < p2.ids.len() - p1.ids.len() + 1 + 6, "fed {fed2}");
    eprintln!(
        "turn 1: {} prompt tokens; turn 2: {} prompt tokens, {} reused, {} processed",
        p1.ids.len(),
        p2.ids.len(),
        p2.reused,
        fed2
    );

    // The same conversation computed from scratch gives the same answer.
    let mut fresh = lm.new_session(&opts).unwrap();
    let (ids_fresh, text_fresh, fed_fresh) = answer(&mut fresh, &p2.ids, 6);
    assert_eq!(fed_fresh, p2.ids.len());
    assert_eq!((ids2, text2), (ids_fresh, text_fresh));
}

#[test]
fn clearing_the_conversation_drops_the_cache_after_the_system_prompt() {
    let lm = fixture();
    let mut s = lm.new_session(&SessionOptions::default()).unwrap();
    let mut conv = Conversation::new(Some("Be brief.".into()));
    conv.push_user("Once upon a time");
    let p1 = lm.prepare_turn(&mut s, &conv).unwrap();
    answer(&mut s, p1.new_ids(), 4);
    conv.clear();
    conv.push_user("The lazy dog");
    let p2 = lm.prepare_turn(&mut s, &conv).unwrap();
    // The system part is shared, the old user turn is not.
    let common = p1
        .ids
        .iter()
        .zip(&p2.ids)
        .take_while(|(a, b)| a == b)
        .count();
    assert_eq!(p2.reused, common);
    assert!(common > 0 && common < p1.ids.len());
    assert_eq!(s.position(), common);
}

#[test]
fn fixture_vocab_thinking_stream() {
    let lm = fixture();
    let tags = lm.thinking_tags().expect("fixture vocab has <think>");
    assert_eq!(
        (
            tags.open_id,
            tags.close_id,
            tags.open.as_str(),
            tags.close.as_str()
        ),
        (Some(358), Some(359), "<think>", "</think>")
    );
    let tok = lm.tokenizer();
    let ids = lm
        .tokenize(
            "<think>Once upon a time</think>The quick brown fox",
            false,
            false,
        )
        .unwrap();
    assert_eq!((ids[0], ids.contains(&359)), (358, true));
    let mut sp = ThinkingSplitter::new(tags.clone(), false);
    let mut segs = Vec::new();
    for &id in &ids {
        let piece = String::from_utf8(tok.token_to_piece(id, false).unwrap()).unwrap();
        segs.extend(sp.push(id, &piece));
    }
    segs.extend(sp.finish());
    assert_eq!(sp.reasoning(), "Once upon a time");
    assert_eq!(sp.answer(), "The quick brown fox");
    assert!(matches!(segs[0], Segment::Reasoning(_)));

    // The same stream after a prompt that pre-opened the trace: only </think> arrives.
    let mut sp = ThinkingSplitter::for_prompt(tags, "<|im_start|>assistant\n<think>\n");
    for &id in &ids[1..] {
        let piece = String::from_utf8(tok.token_to_piece(id, false).unwrap()).unwrap();
        sp.push(id, &piece);
    }
    sp.finish();
    assert_eq!(
        (sp.reasoning(), sp.answer()),
        ("Once upon a time", "The quick brown fox")
    );
}

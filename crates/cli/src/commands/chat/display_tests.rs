//! The display driven by forced token streams of the tiny fixture vocabulary, whose `<think>`
//! (358) and `</think>` (359) are single tokens.

use super::*;
use engine::{LoadedModel, ThinkingTags};

const TRACE: &str = "Once upon a time";
const ANSWER: &str = "The quick brown fox";

fn fixture() -> LoadedModel {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf");
    LoadedModel::load(p).unwrap()
}

/// (id, piece) pairs of `text` in the fixture vocabulary.
fn stream(lm: &LoadedModel, text: &str) -> Vec<(u32, String)> {
    lm.tokenize(text, false, false)
        .unwrap()
        .into_iter()
        .map(|id| {
            let p = lm.tokenizer().token_to_piece(id, false).unwrap();
            (id, String::from_utf8(p).unwrap())
        })
        .collect()
}

fn show(
    lm: &LoadedModel,
    text: &str,
    style: Style,
    show_thinking: bool,
    pre_opened: bool,
) -> (String, Finished) {
    let tags = lm.thinking_tags().unwrap();
    let splitter = ThinkingSplitter::new(tags, pre_opened);
    let mut buf = Vec::new();
    let mut d = AnswerDisplay::new(&mut buf, style, show_thinking, Some(splitter));
    for (id, piece) in stream(lm, text) {
        d.token(id, &piece).unwrap();
    }
    let fin = d.finish().unwrap();
    (String::from_utf8(buf).unwrap(), fin)
}

const COLOR: Style = Style {
    color: true,
    indicator: true,
};

fn full() -> String {
    format!("<think>{TRACE}</think>{ANSWER}")
}

#[test]
fn fixture_has_thinking_tags() {
    let tags = fixture().thinking_tags().unwrap();
    assert_eq!(
        tags,
        ThinkingTags {
            open: "<think>".into(),
            close: "</think>".into(),
            open_id: Some(358),
            close_id: Some(359),
        }
    );
}

#[test]
fn hidden_plain_shows_only_the_answer() {
    let lm = fixture();
    let (out, fin) = show(&lm, &full(), Style::PLAIN, false, false);
    assert_eq!(out, ANSWER);
    assert_eq!(fin.answer, ANSWER);
    assert_eq!(fin.reasoning.as_deref(), Some(TRACE));
    assert!(!fin.unclosed);
}

#[test]
fn hidden_terminal_shows_an_indicator_then_erases_it() {
    let lm = fixture();
    let n_trace = stream(&lm, &format!("<think>{TRACE}</think>")).len();
    let (out, _) = show(&lm, &full(), COLOR, false, false);
    assert!(!out.contains("Once"), "{out:?}");
    assert!(out.contains("thinking… 1 tokens"), "{out:?}");
    let last = format!("thinking… {n_trace} tokens");
    assert!(out.contains(&last), "{out:?}");
    assert!(!out.contains(&format!("thinking… {} tokens", n_trace + 1)));
    assert!(
        out.ends_with(&format!("\x1b[22m\r\x1b[K{ANSWER}")),
        "{out:?}"
    );
}

#[test]
fn shown_terminal_is_faint() {
    let lm = fixture();
    let (out, fin) = show(&lm, &full(), COLOR, true, false);
    assert_eq!(out, format!("\x1b[2m{TRACE}\x1b[22m\n\n{ANSWER}"));
    assert_eq!(fin.reasoning.as_deref(), Some(TRACE));
}

#[test]
fn shown_plain_has_no_escapes() {
    let lm = fixture();
    let (out, _) = show(&lm, &full(), Style::PLAIN, true, false);
    assert_eq!(out, format!("<think>\n{TRACE}\n</think>\n\n{ANSWER}"));
}

#[test]
fn pre_opened_trace_is_hidden_too() {
    let lm = fixture();
    let text = format!("{TRACE}</think>{ANSWER}");
    let (out, fin) = show(&lm, &text, Style::PLAIN, false, true);
    assert_eq!(out, ANSWER);
    assert_eq!(fin.reasoning.as_deref(), Some(TRACE));
    let (out, _) = show(&lm, &text, COLOR, true, true);
    assert_eq!(out, format!("\x1b[2m{TRACE}\x1b[22m\n\n{ANSWER}"));
}

#[test]
fn unclosed_trace_says_so() {
    let lm = fixture();
    let text = format!("<think>{TRACE}");
    let n = stream(&lm, &text).len();
    let (out, fin) = show(&lm, &text, Style::PLAIN, false, false);
    assert_eq!(
        out,
        format!("(the reasoning did not finish: {n} tokens hidden; /thinking on shows it)")
    );
    assert!(fin.unclosed);
    assert_eq!(fin.answer, "");
    let (out, _) = show(&lm, &text, COLOR, true, false);
    assert_eq!(out, format!("\x1b[2m{TRACE}\x1b[22m"));
}

#[test]
fn model_without_tags_passes_text_through() {
    let mut buf = Vec::new();
    let mut d = AnswerDisplay::new(&mut buf, COLOR, false, None);
    for (i, p) in ["<think>", "a", "</think>", "b"].iter().enumerate() {
        d.token(i as u32, p).unwrap();
    }
    let fin = d.finish().unwrap();
    assert_eq!(fin.answer, "<think>a</think>b");
    assert_eq!(fin.reasoning, None);
    assert_eq!(String::from_utf8(buf).unwrap(), "<think>a</think>b");
}

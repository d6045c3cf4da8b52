use super::*;

// Ids of the tiny fixture vocabulary (crates/tokenizer/tests/fixture.rs).
const OPEN: u32 = 358;
const CLOSE: u32 = 359;
const WORD: u32 = 100;

fn tags() -> ThinkingTags {
    ThinkingTags {
        open: "<think>".into(),
        close: "</think>".into(),
        open_id: Some(OPEN),
        close_id: Some(CLOSE),
    }
}

/// Feeds (id, text) pairs; returns (reasoning, answer, every segment in order).
fn run(s: &mut ThinkingSplitter, stream: &[(u32, &str)]) -> (String, String, Vec<Segment>) {
    let mut segs = Vec::new();
    for &(id, text) in stream {
        segs.extend(s.push(id, text));
    }
    segs.extend(s.finish());
    (s.reasoning().to_string(), s.answer().to_string(), segs)
}

fn joined(segs: &[Segment]) -> (String, String) {
    let mut r = String::new();
    let mut a = String::new();
    for s in segs {
        match s {
            Segment::Reasoning(t) => r.push_str(t),
            Segment::Answer(t) => a.push_str(t),
        }
    }
    (r, a)
}

#[test]
fn normal_trace_then_answer() {
    let mut s = ThinkingSplitter::new(tags(), false);
    let stream = [
        (OPEN, "<think>"),
        (WORD, "\nLet me"),
        (WORD, " think."),
        (WORD, "\n"),
        (CLOSE, "</think>"),
        (WORD, "\n\n"),
        (WORD, "Hi"),
        (WORD, " there"),
    ];
    let (r, a, segs) = run(&mut s, &stream);
    assert_eq!(r, "Let me think.\n");
    assert_eq!(a, "Hi there");
    assert_eq!(joined(&segs), (r, a));
    assert!(s.saw_reasoning());
    assert!(!s.unclosed());
    assert!(!s.in_reasoning());
    // Reasoning comes first, then the answer, never interleaved.
    assert!(matches!(segs.first(), Some(Segment::Reasoning(_))));
    assert!(matches!(segs.last(), Some(Segment::Answer(_))));
}

#[test]
fn marker_tokens_that_render_as_nothing() {
    // Control-type markers give no text; the ids alone switch the part.
    let mut s = ThinkingSplitter::new(tags(), false);
    let (r, a, _) = run(
        &mut s,
        &[(OPEN, ""), (WORD, "plan"), (CLOSE, ""), (WORD, "done")],
    );
    assert_eq!((r.as_str(), a.as_str()), ("plan", "done"));
}

#[test]
fn pre_opened_by_the_prompt() {
    let t = tags();
    let prompt = "<|im_start|>assistant\n<think>\n";
    assert!(t.prompt_opens_trace(prompt));
    assert!(!t.prompt_opens_trace("<|im_start|>assistant\n"));
    assert!(!t.prompt_opens_trace("<think>\n\n</think>\n\n"));
    assert!(!t.prompt_opens_trace("<think> started</think> and <think> then text"));
    let mut s = ThinkingSplitter::for_prompt(t, prompt);
    assert!(s.in_reasoning());
    let (r, a, _) = run(
        &mut s,
        &[
            (WORD, "2+2"),
            (WORD, " is 4."),
            (CLOSE, "</think>"),
            (WORD, "4"),
        ],
    );
    assert_eq!((r.as_str(), a.as_str()), ("2+2 is 4.", "4"));
    assert!(!s.unclosed());
}

#[test]
fn trace_never_closed() {
    let mut s = ThinkingSplitter::new(tags(), false);
    let (r, a, _) = run(&mut s, &[(OPEN, "<think>"), (WORD, "hmm"), (WORD, " <")]);
    // A partial marker at the end is released as the text it was, still reasoning.
    assert_eq!((r.as_str(), a.as_str()), ("hmm <", ""));
    assert!(s.unclosed());
    assert!(s.in_reasoning());
}

#[test]
fn markers_split_across_pieces_as_text() {
    // Markers spelled out by ordinary tokens, cut at every possible place.
    let text = "<think>why</think>because";
    for cut1 in 1..text.len() {
        for cut2 in cut1..text.len() {
            let pieces = [&text[..cut1], &text[cut1..cut2], &text[cut2..]];
            let mut s = ThinkingSplitter::new(tags(), false);
            let mut segs = Vec::new();
            for p in pieces {
                for seg in s.push(WORD, p) {
                    // No piece of a marker ever reaches the user.
                    let (Segment::Reasoning(t) | Segment::Answer(t)) = &seg;
                    assert!(!t.contains('<') && !t.contains('>'), "{pieces:?}: {t:?}");
                    segs.push(seg);
                }
            }
            segs.extend(s.finish());
            assert_eq!(
                joined(&segs),
                ("why".into(), "because".into()),
                "{pieces:?}"
            );
        }
    }
}

#[test]
fn marker_token_text_with_held_text_before_it() {
    // The decoder may release earlier bytes together with the marker token's text.
    let mut s = ThinkingSplitter::new(tags(), true);
    let (r, a, _) = run(
        &mut s,
        &[(WORD, "x"), (CLOSE, "yz</think>\n"), (WORD, "ok")],
    );
    assert_eq!((r.as_str(), a.as_str()), ("xyz", "ok"));
}

#[test]
fn no_thinking_tags_means_all_answer() {
    let mut s = ThinkingSplitter::new(tags(), false);
    let (r, a, segs) = run(
        &mut s,
        &[(WORD, "  Hello"), (WORD, ", a < b and "), (WORD, "c > d")],
    );
    assert_eq!(r, "");
    assert_eq!(a, "  Hello, a < b and c > d");
    assert!(segs.iter().all(|s| matches!(s, Segment::Answer(_))));
    assert!(!s.saw_reasoning());
    assert!(!s.unclosed());
}

#[test]
fn stray_close_marker_is_removed() {
    // A trace opened by a prompt the splitter was not told about: the close marker still
    // never shows.
    let mut s = ThinkingSplitter::new(tags(), false);
    let (_, a, _) = run(&mut s, &[(WORD, "x"), (CLOSE, "</think>"), (WORD, "y")]);
    assert_eq!(a, "xy");
}

#[test]
fn text_only_tags() {
    let mut s = ThinkingSplitter::new(ThinkingTags::text("<reason>", "</reason>"), false);
    let (r, a, _) = run(
        &mut s,
        &[(1, "<rea"), (2, "son>a"), (3, "</reas"), (4, "on>b")],
    );
    assert_eq!((r.as_str(), a.as_str()), ("a", "b"));
}

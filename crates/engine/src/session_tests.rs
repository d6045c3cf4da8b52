use super::*;
use std::sync::Mutex;

type Calls = Arc<Mutex<Vec<(Vec<u32>, usize)>>>;

/// Next token is `(last + 1) % n_vocab` with a clear margin; records every forward call.
struct Counter {
    n_vocab: usize,
    ctx: usize,
    calls: Calls,
    cached: usize,
    /// Like a sliding-window ring: going back more than this many positions drops all.
    max_back: usize,
}

impl LogitsSource for Counter {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }
    fn max_seq_len(&self) -> usize {
        self.ctx
    }
    fn forward(&mut self, tokens: &[u32], pos: usize, _all: bool) -> Result<Vec<f32>, EngineError> {
        assert_eq!(pos, self.cached, "fed at the wrong position");
        assert!(pos + tokens.len() <= self.ctx, "cache overflow");
        self.cached += tokens.len();
        self.calls.lock().unwrap().push((tokens.to_vec(), pos));
        let next = (*tokens.last().unwrap() as usize + 1) % self.n_vocab;
        let mut l = vec![0.0; self.n_vocab];
        l[next] = 5.0;
        Ok(l)
    }
    fn truncate(&mut self, n: usize) -> usize {
        self.cached = if n + self.max_back < self.cached {
            0
        } else {
            self.cached.min(n)
        };
        self.cached
    }
}

/// Token i renders as the i-th entry; `eog` ends generation.
struct Pieces {
    pieces: Vec<Vec<u8>>,
    eog: u32,
}

impl TokenText for Pieces {
    fn is_eog(&self, id: u32) -> bool {
        id == self.eog
    }
    fn piece(&self, id: u32) -> Vec<u8> {
        self.pieces[id as usize].clone()
    }
}

fn session(pieces: Vec<&[u8]>, eog: u32, ctx: usize) -> (Session, Calls) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let src = Counter {
        n_vocab: pieces.len(),
        ctx,
        calls: calls.clone(),
        cached: 0,
        max_back: usize::MAX / 2,
    };
    let text = Pieces {
        pieces: pieces.into_iter().map(|p| p.to_vec()).collect(),
        eog,
    };
    (Session::from_parts(Box::new(src), Arc::new(text)), calls)
}

fn letters() -> Vec<&'static [u8]> {
    vec![b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"<eos>"]
}

fn greedy(n: Option<usize>) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

fn collect(
    s: &mut Session,
    input: &[u32],
    o: &GenerateOptions,
) -> (Vec<u32>, String, GenerationStats) {
    let mut ids = Vec::new();
    let mut text = String::new();
    let stats = s
        .generate_with(input, o, |ev| {
            ids.push(ev.id);
            text.push_str(&ev.text);
        })
        .unwrap();
    (ids, text, stats)
}

#[test]
fn prefill_is_one_call_then_one_token_per_step() {
    let (mut s, calls) = session(letters(), 7, 64);
    let (ids, text, st) = collect(&mut s, &[0, 1], &greedy(Some(3)));
    assert_eq!(ids, vec![2, 3, 4]);
    assert_eq!(text, "cde");
    assert_eq!(st.stop, StopReason::Limit);
    assert_eq!((st.prompt_tokens, st.generated_tokens), (2, 3));
    // The last token is not fed: nothing needs its logits.
    assert_eq!(
        *calls.lock().unwrap(),
        vec![(vec![0, 1], 0), (vec![2], 2), (vec![3], 3)]
    );
    assert_eq!(s.tokens(), vec![0, 1, 2, 3, 4]);
    assert_eq!(s.position(), 4);
}

#[test]
fn stops_on_eog_and_includes_it() {
    let (mut s, _) = session(letters(), 7, 64);
    let (ids, text, st) = collect(&mut s, &[4], &greedy(Some(10)));
    assert_eq!(ids, vec![5, 6, 7]);
    assert_eq!(text, "fg");
    assert_eq!(st.stop, StopReason::Eos);
}

#[test]
fn context_full_is_reported_not_overrun() {
    let (mut s, _) = session(letters(), 99, 5);
    let (ids, _, st) = collect(&mut s, &[0, 1], &greedy(None));
    // 2 prompt + 3 fed generated tokens fill 5 slots; the 4th sampled one cannot be fed.
    assert_eq!(ids, vec![2, 3, 4, 5]);
    assert_eq!(st.stop, StopReason::ContextFull);
    let err = s.generate(&[1], &greedy(None)).err().unwrap();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
}

#[test]
fn prompt_errors() {
    let (mut s, _) = session(letters(), 7, 4);
    assert!(matches!(
        s.generate(&[], &greedy(None)).err().unwrap(),
        EngineError::EmptyPrompt
    ));
    assert!(matches!(
        s.generate(&[0, 1, 2, 3, 4], &greedy(None)).err().unwrap(),
        EngineError::PromptTooLong {
            prompt: 5,
            ctx: 4,
            ..
        }
    ));
    assert!(matches!(
        s.generate(&[8], &greedy(None)).err().unwrap(),
        EngineError::BadToken { id: 8, .. }
    ));
    assert!(s.generate(&[0], &greedy(Some(0))).is_err());
    let bad = GenerateOptions {
        sampling: SamplingParams {
            top_p: 1.5,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(s
        .generate(&[0], &bad)
        .err()
        .unwrap()
        .to_string()
        .contains("top-p"));
}

#[test]
fn stop_string_across_tokens_is_not_emitted() {
    let pieces: Vec<&[u8]> = vec![b"x", b"Hel", b"lo", b" W", b"or", b"ld", b"!", b"<eos>"];
    let (mut s, _) = session(pieces, 7, 64);
    let o = GenerateOptions {
        stop: vec!["o Wor".into()],
        ..greedy(Some(20))
    };
    let mut events = Vec::new();
    let st = s
        .generate_with(&[0], &o, |e| events.push(e.clone()))
        .unwrap();
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, vec!["Hel", "l", "", ""]);
    assert_eq!(st.stop, StopReason::StopString);
}

#[test]
fn held_text_is_released_at_limit() {
    let pieces: Vec<&[u8]> = vec![b"x", b"Hel", b"lo", b" W", b"or", b"ld", b"!", b"<eos>"];
    let (mut s, _) = session(pieces, 7, 64);
    let o = GenerateOptions {
        stop: vec!["o Wx".into()],
        ..greedy(Some(3))
    };
    let (_, text, st) = collect(&mut s, &[0], &o);
    assert_eq!(text, "Hello W");
    assert_eq!(st.stop, StopReason::Limit);
}

#[test]
fn split_utf8_character_is_emitted_whole() {
    let e = "é".as_bytes();
    let pieces: Vec<&[u8]> = vec![b"x", &e[..1], &e[1..], b"<eos>"];
    let (mut s, _) = session(pieces, 3, 64);
    let mut texts = Vec::new();
    s.generate_with(&[0], &greedy(Some(5)), |ev| texts.push(ev.text.clone()))
        .unwrap();
    assert_eq!(texts, vec!["", "é", ""]);
}

#[test]
fn second_turn_continues_the_sequence() {
    let (mut s, calls) = session(letters(), 99, 64);
    collect(&mut s, &[0], &greedy(Some(2)));
    let (ids, _, st) = collect(&mut s, &[0], &greedy(Some(1)));
    assert_eq!(ids, vec![1]);
    assert_eq!(st.prompt_tokens, 2);
    // The unfed token 2 leads the second prefill.
    assert_eq!(calls.lock().unwrap().last().unwrap(), &(vec![2, 0], 2));
    s.reset();
    assert_eq!(s.position(), 0);
    let (ids, _, _) = collect(&mut s, &[3], &greedy(Some(1)));
    assert_eq!(ids, vec![4]);
}

#[test]
fn logprobs_reported_when_asked() {
    let (mut s, _) = session(letters(), 7, 64);
    let o = GenerateOptions {
        logprobs: Some(2),
        ..greedy(Some(1))
    };
    let mut evs = Vec::new();
    s.generate_with(&[0], &o, |e| evs.push(e.clone())).unwrap();
    let e = &evs[0];
    // logits: 5 at id 1, 0 elsewhere (8 tokens).
    let z = (5.0f64.exp() + 7.0).ln();
    assert!((e.logprob.unwrap() - (5.0 - z)).abs() < 1e-9);
    assert_eq!(e.top.len(), 2);
    assert_eq!(e.top[0].id, 1);
    assert_eq!(e.top[1].id, 0);
    assert!((e.top[1].logprob + z).abs() < 1e-9);
}

#[test]
fn reuse_prefix_feeds_only_what_differs() {
    let (mut s, calls) = session(letters(), 99, 64);
    collect(&mut s, &[0, 1], &greedy(Some(2)));
    // Session holds 0 1 2 (cached) + 3 (sampled, pending).
    assert_eq!(s.tokens(), vec![0, 1, 2, 3]);
    // Same conversation plus two new tokens: everything is kept, the pending token included.
    let ids = [0, 1, 2, 3, 5, 6];
    let skip = s.reuse_prefix(&ids);
    assert_eq!(skip, 4);
    assert_eq!(s.position(), 3);
    let (_, _, st) = collect(&mut s, &ids[skip..], &greedy(Some(1)));
    assert_eq!(st.prompt_tokens, 3); // pending 3, then 5 6
    assert_eq!(calls.lock().unwrap().last().unwrap(), &(vec![3, 5, 6], 3));

    // A re-render that differs at position 2 drops the cache from there on.
    let ids = [0, 1, 4, 4];
    let skip = s.reuse_prefix(&ids);
    assert_eq!((skip, s.position(), s.tokens()), (2, 2, vec![0, 1]));
    let (_, _, st) = collect(&mut s, &ids[skip..], &greedy(Some(1)));
    assert_eq!(st.prompt_tokens, 2);
    assert_eq!(calls.lock().unwrap().last().unwrap(), &(vec![4, 4], 2));

    // A prompt the session already holds entirely still leaves its last id to feed.
    let have = s.tokens();
    let skip = s.reuse_prefix(&have[..3]);
    assert_eq!(skip, 2);
    assert_eq!(s.tokens(), vec![0, 1]);
}

#[test]
fn truncate_past_the_end_changes_nothing() {
    let (mut s, _) = session(letters(), 99, 64);
    collect(&mut s, &[0], &greedy(Some(2)));
    assert_eq!(s.tokens(), vec![0, 1, 2]);
    s.truncate(10);
    assert_eq!(s.tokens(), vec![0, 1, 2]);
    s.truncate(1);
    assert_eq!((s.tokens(), s.position()), (vec![0], 1));
}

#[test]
fn reuse_prefix_refeeds_everything_when_the_cache_cannot_go_back() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let src = Counter {
        n_vocab: letters().len(),
        ctx: 64,
        calls: calls.clone(),
        cached: 0,
        max_back: 2,
    };
    let text = Pieces {
        pieces: letters().into_iter().map(|p| p.to_vec()).collect(),
        eog: 99,
    };
    let mut s = Session::from_parts(Box::new(src), Arc::new(text));
    collect(&mut s, &[0, 1, 2, 3, 4, 5], &greedy(Some(1)));
    assert_eq!(s.tokens(), vec![0, 1, 2, 3, 4, 5, 6]);
    // Going back one position is fine.
    let ids = [0, 1, 2, 3, 4, 9, 9];
    assert_eq!(s.reuse_prefix(&ids), 5);
    assert_eq!(s.position(), 5);
    // Going back four is not: nothing is kept, and the whole prompt is fed again.
    let ids = [0, 1, 7, 7];
    assert_eq!(s.reuse_prefix(&ids), 0);
    assert_eq!((s.position(), s.tokens()), (0, vec![]));
    collect(&mut s, &ids, &greedy(Some(1)));
    assert_eq!(
        calls.lock().unwrap().last().unwrap(),
        &(vec![0, 1, 7, 7], 0)
    );
}

#[test]
fn logit_bias_moves_greedy_choices_and_rejects_non_finite_values() {
    // After token 1 the counter model prefers 2 by a margin of 5.
    let first = |bias: Vec<(u32, f32)>| {
        let (mut s, _) = session(letters(), 7, 64);
        let o = GenerateOptions {
            logit_bias: bias,
            ..greedy(Some(1))
        };
        collect(&mut s, &[0, 1], &o).0[0]
    };
    assert_eq!(first(Vec::new()), 2);
    assert_eq!(first(vec![(5, 5.5)]), 5);
    assert_eq!(first(vec![(5, 4.5)]), 2);
    assert_eq!(first(vec![(2, -100.0)]), 0, "the rest tie at 0: lowest id");
    // Ids outside the vocabulary change nothing.
    assert_eq!(first(vec![(u32::MAX, 100.0)]), 2);
    let (mut s, _) = session(letters(), 7, 64);
    let o = GenerateOptions {
        logit_bias: vec![(3, f32::NAN)],
        ..greedy(Some(1))
    };
    assert!(s.generate_with(&[0, 1], &o, |_| {}).is_err());
}

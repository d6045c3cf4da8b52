//! Chat-style cache reuse on the gemma3 fixture (window 8, every other layer sliding) once the
//! sliding-window ring has wrapped: a turn that keeps a recent prefix reuses it, a turn that
//! goes back further than the ring remembers is fed again from scratch, and both answer with
//! the tokens of a fresh session.

use std::path::PathBuf;

use engine::{GenerateOptions, KvDtype, LoadedModel, SamplingParams, Session, SessionOptions};

fn fixture() -> LoadedModel {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/gemma3.gguf");
    LoadedModel::load(p).unwrap()
}

/// 1024 positions: the sliding layers get a ring of min(1024, 8 + 512 padded to 256) = 768.
fn options() -> SessionOptions {
    SessionOptions {
        max_seq_len: Some(1024),
        kv_dtype: KvDtype::F16,
    }
}

/// Greedy answer of `n` tokens to `ids` (fed as given); returns (ids, prompt tokens fed).
fn answer(s: &mut Session, ids: &[u32], n: usize) -> (Vec<u32>, usize) {
    let opts = GenerateOptions {
        max_tokens: Some(n),
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let mut out = Vec::new();
    let st = s.generate_with(ids, &opts, |e| out.push(e.id)).unwrap();
    (out, st.prompt_tokens)
}

fn fresh_answer(lm: &LoadedModel, ids: &[u32], n: usize) -> Vec<u32> {
    let mut s = lm.new_session(&options()).unwrap();
    let (out, fed) = answer(&mut s, ids, n);
    assert_eq!(fed, ids.len());
    out
}

/// `n` deterministic ids spread over the vocabulary, offset by `salt`.
fn ids(lm: &LoadedModel, n: usize, salt: u64) -> Vec<u32> {
    let v = lm.n_vocab() as u64;
    (0..n as u64)
        .map(|i| ((i * 7919 + 13 + salt) % v) as u32)
        .collect()
}

#[test]
fn reuse_after_the_ring_wrapped_matches_a_fresh_session() {
    let lm = fixture();
    let mut s = lm.new_session(&options()).unwrap();
    // 800 prompt tokens and 6 answered (the last one not fed yet): the rings hold the last
    // 768 of the 805 positions, 37..805.
    let first = ids(&lm, 800, 0);
    let (a1, fed) = answer(&mut s, &first, 6);
    assert_eq!(fed, 800);
    assert_eq!(a1, fresh_answer(&lm, &first, 6));

    // Next turn shares the first 790 tokens: position 790 still sees its whole window, so
    // the prefix is kept and only the new tail is processed.
    let mut turn2 = first[..790].to_vec();
    turn2.extend(ids(&lm, 20, 1));
    let kept = s.reuse_prefix(&turn2);
    assert_eq!((kept, s.position()), (790, 790));
    let (a2, fed) = answer(&mut s, &turn2[kept..], 6);
    assert_eq!(fed, 20);
    assert_eq!(a2, fresh_answer(&lm, &turn2, 6));

    // A turn that only shares the first 20 tokens needs keys the ring overwrote long ago:
    // nothing is kept and the whole prompt is fed again, giving a fresh session's answer.
    let mut turn3 = first[..20].to_vec();
    turn3.extend(ids(&lm, 30, 2));
    assert_eq!(s.reuse_prefix(&turn3), 0);
    assert_eq!((s.position(), s.tokens()), (0, vec![]));
    let (a3, fed) = answer(&mut s, &turn3, 6);
    assert_eq!(fed, turn3.len());
    assert_eq!(a3, fresh_answer(&lm, &turn3, 6));
}

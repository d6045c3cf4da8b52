//! Sliding-window layers keep a ring of window + one micro-batch positions (llama.cpp's SWA
//! cache). On the gemma3 fixture (window 8, every other layer sliding) a long sequence wraps
//! the ring several times; every logit must equal a cache that keeps every position.

use std::path::PathBuf;
use std::sync::Arc;

use models::{KvDtype, Model, State, StateOptions};

fn gemma3() -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma3.gguf");
    let file = gguf::GgufFile::open(path).expect("open fixture");
    Model::load(Arc::new(file)).expect("load fixture")
}

/// A deterministic token sequence over the fixture's vocabulary.
fn tokens(m: &Model, n: usize) -> Vec<u32> {
    let v = m.config().n_vocab as u64;
    (0..n as u64)
        .map(|i| ((i * 7919 + 13) % v) as u32)
        .collect()
}

const SEQ: usize = 1024;

fn state(m: &Model, kv: KvDtype, ubatch: usize, swa_full: bool) -> State {
    m.new_state_with(SEQ, kv, StateOptions { ubatch, swa_full })
}

#[test]
fn ring_cache_gives_the_logits_of_a_full_cache() {
    let m = gemma3();
    assert_eq!(m.config().sliding_window, 8);
    let toks = tokens(&m, 700);
    for kv in [KvDtype::F16, KvDtype::F32] {
        // ubatch 64: the prompt runs as 64-token micro-batches (the tiled attention kernel),
        // and the ring holds 8 + 64 padded to 256 positions, so 700 wraps it twice.
        let mut ring = state(&m, kv, 64, false);
        let mut full = state(&m, kv, 64, true);
        assert!(ring.kv_bytes() < full.kv_bytes());
        let a = m.forward(&mut ring, &toks[..600], 0, true).unwrap();
        let b = m.forward(&mut full, &toks[..600], 0, true).unwrap();
        assert_eq!(a, b, "{kv:?}: prompt logits");
        // Then decoding one token at a time.
        for (i, &t) in toks[600..].iter().enumerate() {
            let a = m.forward(&mut ring, &[t], 600 + i, false).unwrap();
            let b = m.forward(&mut full, &[t], 600 + i, false).unwrap();
            assert_eq!(a, b, "{kv:?}: step {i}");
        }
    }
}

#[test]
fn micro_batches_agree_with_one_batch_and_with_decoding() {
    let m = gemma3();
    let toks = tokens(&m, 200);
    let run = |ubatch: usize| {
        let mut s = state(&m, KvDtype::F32, ubatch, false);
        m.forward(&mut s, &toks, 0, true).unwrap()
    };
    let one = run(512);
    // The F32 cache's attention and every matmul here are per row, so batching changes
    // nothing but the work split.
    assert_eq!(run(64), one);
    assert_eq!(run(1), one);
    // All-logits rows line up with a last-row-only run of each prefix.
    let nv = m.config().n_vocab;
    let mut s = state(&m, KvDtype::F32, 64, false);
    let last = m.forward(&mut s, &toks, 0, false).unwrap();
    assert_eq!(last, one[199 * nv..]);
}

#[test]
fn going_back_past_the_ring_refeeds_instead_of_answering_wrong() {
    let m = gemma3();
    let toks = tokens(&m, 700);
    let mut ring = state(&m, KvDtype::F16, 64, false);
    m.forward(&mut ring, &toks, 0, false).unwrap();
    // The ring holds positions 444..700: position 650 still sees its whole window.
    assert_eq!(ring.truncate(650), 650);
    let after = m.forward(&mut ring, &toks[650..660], 650, false).unwrap();
    let mut fresh = state(&m, KvDtype::F16, 64, true);
    let want = m.forward(&mut fresh, &toks[..660], 0, false).unwrap();
    assert_eq!(after, want);
    // Position 300's window was overwritten: everything is dropped, and continuing from
    // there is refused with a message rather than computed from the wrong keys.
    let mut ring = state(&m, KvDtype::F16, 64, false);
    m.forward(&mut ring, &toks, 0, false).unwrap();
    let mut probe = state(&m, KvDtype::F16, 64, false);
    m.forward(&mut probe, &toks, 0, false).unwrap();
    let err = m
        .forward(&mut probe, &toks[300..301], 300, false)
        .unwrap_err();
    assert!(err.to_string().contains("sliding-window cache"), "{err}");
    assert_eq!(ring.truncate(300), 0);
    assert_eq!(ring.n_cached(), 0);
    let again = m.forward(&mut ring, &toks[..310], 0, false).unwrap();
    let mut fresh = state(&m, KvDtype::F16, 64, true);
    assert_eq!(
        again,
        m.forward(&mut fresh, &toks[..310], 0, false).unwrap()
    );
}

#[test]
fn f16_micro_batched_prefill_is_close_to_decoding_token_by_token() {
    let m = gemma3();
    let nv = m.config().n_vocab;
    let toks = tokens(&m, 300);
    // ubatch 64 over 300 tokens: four 64-row batches on the tiled kernel (which keeps
    // scores in f32) and a 44-row tail; the ring (256 slots) wraps within the prompt.
    let mut batched = state(&m, KvDtype::F16, 64, false);
    let all = m.forward(&mut batched, &toks, 0, true).unwrap();
    // Token by token: the decode kernel, whose f16 accumulator rounds differently.
    let mut step = state(&m, KvDtype::F16, 64, false);
    let mut worst = 0f32;
    for (i, &t) in toks.iter().enumerate() {
        let row = m.forward(&mut step, &[t], i, false).unwrap();
        let want = &all[i * nv..][..nv];
        for (a, b) in row.iter().zip(want) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    eprintln!("largest relative logit difference: {worst:e}");
    assert!(worst > 0.0, "the two kernels round differently");
    // Measured 3.2e-2 at worst (typically 5e-3 per position, no larger after the ring
    // wraps); the fixture's logits reach about 13.
    assert!(worst < 5e-2, "{worst}");
}

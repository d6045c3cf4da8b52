//! The `model` fuzz target's property (`engine::fuzzing::check_model`) over the seed corpus in
//! `fuzz/seeds/model` and a deterministic stream of random edit programs, so it runs in every
//! `cargo test` without nightly or libFuzzer.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::fuzzing::check_model;

#[test]
fn seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/model");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let t0 = Instant::now();
        loaded += check_model(&std::fs::read(&path).unwrap()) as usize;
        assert!(t0.elapsed() < Duration::from_secs(2), "{}", path.display());
    }
    // The unedited base model loads for some families (the llama-like ones).
    assert!(loaded > 0);
}

#[test]
fn random_edit_programs() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..3000 {
        let mut data = Vec::new();
        for _ in 0..(state % 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.push(state as u8);
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let t0 = Instant::now();
        check_model(&data);
        assert!(t0.elapsed() < Duration::from_secs(2), "{data:?}");
    }
}

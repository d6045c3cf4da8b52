//! The fuzz target's property (`gguf::fuzzing::check_parse`) over a deterministic corpus, so it
//! runs in every `cargo test` without nightly or libFuzzer: the fixtures, every truncation and
//! many byte flips of a small real file, and the seed inputs kept in `fuzz/seeds/parse`.

use std::path::Path;

use gguf::fuzzing::check_parse;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

#[test]
fn fixtures_parse_and_round_trip() {
    for name in ["llama-q8_0.gguf", "Q4_K.gguf", "IQ4_XS.gguf"] {
        assert!(check_parse(&data(name)), "{name} did not parse");
    }
}

#[test]
fn truncations_and_flips_of_a_real_file() {
    let bytes = data("Q4_K.gguf");
    let mut parsed = 0;
    for cut in 0..bytes.len() {
        parsed += check_parse(&bytes[..cut]) as usize;
    }
    // Only the full file is valid: every shorter prefix loses tensor data.
    assert_eq!(parsed, 0);
    // A flip inside tensor data leaves a valid file; flips in the header mostly do not.
    let data_start = bytes.len() - 3 * 1152;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.clone();
        let i = (state % bytes.len() as u64) as usize;
        b[i] ^= (state >> 32) as u8 | 1;
        let ok = check_parse(&b);
        if i >= data_start {
            assert!(ok, "flip at {i} in tensor data made the file invalid");
        }
    }
}

#[test]
fn seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/parse");
    let mut valid = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if check_parse(&std::fs::read(&path).unwrap()) {
            valid.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    valid.sort();
    // The hand-made seeds; anything the fuzzer adds later is only checked for not panicking.
    for seed in [
        "empty-v2",
        "empty-v3",
        "nested-array",
        "one-kv-u32",
        "one-tensor",
    ] {
        assert!(
            valid.iter().any(|v| v == seed),
            "seed {seed} should parse; valid: {valid:?}"
        );
    }
    assert!(!valid.iter().any(|v| v == "bad-version"));
}

//! The `vocab` and `template` fuzz targets' properties over their seed corpora in
//! `fuzz/seeds/`, plus deterministic byte flips of them, in every `cargo test`.

use std::path::Path;

use tokenizer::fuzzing::{check_template, check_vocab};

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(name);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

fn flips(seed: &[u8], n: usize, mut f: impl FnMut(&[u8])) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = seed.to_vec();
        if !b.is_empty() {
            let i = (state % b.len() as u64) as usize;
            b[i] ^= (state >> 32) as u8 | 1;
        }
        f(&b);
    }
}

#[test]
fn vocab_seeds_and_flips() {
    let mut built = 0;
    for s in seeds("vocab") {
        built += check_vocab(&s) as usize;
        flips(&s, 300, |b| {
            check_vocab(b);
        });
    }
    assert!(built > 0);
}

#[test]
fn template_seeds_and_flips() {
    let mut rendered = 0;
    for s in seeds("template") {
        rendered += check_template(&s) as usize;
        // Fewer: some seeds run until their fuel is spent (a tenth of a second each).
        flips(&s, 40, |b| {
            check_template(b);
        });
    }
    assert!(rendered > 0);
}

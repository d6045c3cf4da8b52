//! Encoding throughput on large inputs, so a quadratic step shows up as a collapse in MB/s
//! between the 1 MB and 10 MB cases. Needs the real models (scripts/fetch-models.sh).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokenizer::Tokenizer;

fn load(file: &str) -> Tokenizer {
    let dir = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/torchless")
        });
    let path = dir.join("models").join(file);
    let gguf = gguf::GgufFile::open(&path)
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-models.sh first"));
    Tokenizer::from_gguf(gguf.metadata()).unwrap()
}

fn encode(c: &mut Criterion) {
    // Mixed prose, digits, accents, CJK and emoji, so every pre-tokenizer branch is exercised.
    let unit = "The quick brown fox, 1234 jumps: naïve café 東京 🚀\n\tover the lazy dog.  ";
    let mut group = c.benchmark_group("encode");
    group.sample_size(10);
    for (name, file) in [
        ("bpe-smollm2", "smollm2-135m-instruct-q4_1.gguf"),
        ("spm-gemma3", "gemma3-270m-q4_k_m.gguf"),
    ] {
        let tok = load(file);
        for mb in [1usize, 10] {
            let text = unit.repeat(mb * 1_000_000 / unit.len());
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, format!("{mb}MB")), &text, |b, t| {
                b.iter(|| tok.encode(t, false, false).unwrap().len())
            });
        }
        // One huge "word": no pre-tokenizer split, so all merges happen in one sequence.
        let word = "abcdefghij".repeat(100_000);
        group.throughput(Throughput::Bytes(word.len() as u64));
        group.bench_with_input(BenchmarkId::new(name, "1MB-one-word"), &word, |b, t| {
            b.iter(|| tok.encode(t, false, false).unwrap().len())
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);

//! Whole weight-matrix products as the models run them, per weight type: one token
//! (generation, memory-bound), 4 and 16 (batched decoding) and a 128-token batch (prompt processing, compute-bound), on
//! SmolLM2-135M's FFN shape (1536 x 576), plus a 32768-row vocabulary slice for the output
//! projection: `cargo bench -p torchless-compute --bench matmul [-- FILTER]`. Threads: the compute pool's
//! default (all cores) unless `TORCHLESS_BENCH_THREADS` is set.

use compute::{matmul, WeightView};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use quant::GgmlType;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn encode(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let w = values(rows * cols, 7);
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut out = vec![0u8; rows * rb];
    for (src, dst) in w.chunks_exact(cols).zip(out.chunks_exact_mut(rb)) {
        quant::quantize_row(ty, src, dst).unwrap();
    }
    out
}

fn bench(c: &mut Criterion) {
    if let Some(n) = std::env::var("TORCHLESS_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        compute::set_threads(n);
    }
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F16,
    ];
    // (name, rows, cols, tokens)
    let shapes = [
        ("ffn_1536x576", 1536, 576, 1),
        // Several sequences decoding together (the engine's scheduler).
        ("ffn_1536x576", 1536, 576, 4),
        ("ffn_1536x576", 1536, 576, 16),
        ("ffn_1536x576", 1536, 576, 128),
        ("vocab_32768x576", 32768, 576, 1),
    ];
    let mut qbuf = Vec::new();
    for (name, rows, cols, n) in shapes {
        let mut group = c.benchmark_group(format!("matmul_{name}_t{n}"));
        group.throughput(Throughput::Elements((rows * cols * n) as u64));
        if n == 1 && rows > 4096 {
            group.sample_size(20);
        }
        let x = values(n * cols, 3);
        let mut out = vec![0f32; n * rows];
        for ty in types {
            if ty.row_bytes(cols as u64).is_none() {
                continue;
            }
            let bytes = encode(ty, rows, cols);
            let w = WeightView::new(ty, rows, cols, &bytes).unwrap();
            group.bench_function(ty.name(), |b| {
                b.iter(|| matmul(black_box(&w), black_box(&x), n, &mut out, &mut qbuf).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

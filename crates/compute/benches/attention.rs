//! Attention over an F16 KV cache with the shapes of the real models: one decode query
//! against 64 / 512 cached positions, and a 128-token prefill (ggml's tiled kernel), at the
//! active SIMD level (`TORCHLESS_SIMD=scalar|avx2|avx512` to compare levels) and the default
//! thread count: `cargo bench -p torchless-compute --bench attention [-- FILTER]`.

use compute::{attention, AttnParams, KvCache, KvDtype};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn data(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.731 + seed) * 1.37).sin())
        .collect()
}

/// (name, query heads, KV heads, head dim)
const SHAPES: [(&str, usize, usize, usize); 2] = [("smollm2", 9, 3, 64), ("gemma3", 4, 1, 256)];

fn filled(nkv: usize, d: usize, len: usize) -> KvCache {
    let mut cache = KvCache::new(KvDtype::F16, len, nkv, d, d);
    let k = data(len * nkv * d, 0.3);
    let v = data(len * nkv * d, 1.1);
    for t in 0..len {
        let row = t * nkv * d..(t + 1) * nkv * d;
        cache.store(t, &k[row.clone()], &v[row]).unwrap();
    }
    cache
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    for (name, nh, nkv, d) in SHAPES {
        let p = AttnParams {
            n_head: nh,
            scale: 1.0 / (d as f32).sqrt(),
            softcap: 0.0,
            window: 0,
        };
        for ctx in [64, 512] {
            let cache = filled(nkv, d, ctx);
            let q = data(nh * d, 2.0);
            let mut out = vec![0f32; nh * d];
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("{name}/decode/ctx{ctx}"), |b| {
                b.iter(|| attention(&p, &cache, black_box(&q), 1, ctx - 1, &mut out).unwrap())
            });
        }
        let n = 128;
        let cache = filled(nkv, d, n);
        let q = data(n * nh * d, 2.0);
        let mut out = vec![0f32; n * nh * d];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{name}/prefill{n}"), |b| {
            b.iter(|| attention(&p, &cache, black_box(&q), n, 0, &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

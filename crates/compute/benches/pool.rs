//! Cost of one parallel region of the compute pool (what every matmul, attention and fused
//! op pays per call; a decode step runs ~5 per layer): an empty region, and regions of 2 and
//! 32 tiny tasks, against running the same tasks on the calling thread:
//! `cargo bench -p torchless-compute --bench pool`.

use std::sync::atomic::{AtomicUsize, Ordering};

use compute::pool;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    pool::set_threads(pool::default_threads().max(2));
    let mut g = c.benchmark_group("pool");
    let hits = AtomicUsize::new(0);
    let task = |i: usize| {
        hits.fetch_add(black_box(i) & 1, Ordering::Relaxed);
    };
    for n in [2usize, 32] {
        g.bench_function(format!("region/{n}-tasks"), |b| {
            b.iter(|| pool::run(n, task))
        });
        g.bench_function(format!("inline/{n}-tasks"), |b| {
            b.iter(|| (0..n).for_each(task))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Measures read bandwidth from RAM with N threads (default 2), the ceiling for token
//! generation: a decode step must stream every weight once, so tokens/s can never exceed
//! bandwidth / bytes-per-token. BENCHMARKS.md reports tg as a fraction of this roofline.
//!
//!   cargo run --release -p torchless-models --example membw -- [threads] [MiB per thread]

use std::time::Instant;

fn sum(chunk: &[u64]) -> u64 {
    // Eight independent lanes so the loop is bound by loads, not by one add chain.
    let mut acc = [0u64; 8];
    for c in chunk.chunks_exact(8) {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let threads = args.first().copied().unwrap_or(2).max(1);
    let mib = args.get(1).copied().unwrap_or(512).max(1);
    let words = mib * (1 << 20) / 8;
    // Distinct buffers per thread, far larger than any cache, touched once before timing.
    let bufs: Vec<Vec<u64>> = (0..threads)
        .map(|t| (0..words as u64).map(|i| i ^ t as u64).collect())
        .collect();
    let mut best = f64::MAX;
    let mut check = 0u64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let sums: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = bufs.iter().map(|b| s.spawn(|| sum(b))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        best = best.min(t0.elapsed().as_secs_f64());
        check = check.wrapping_add(sums.iter().sum::<u64>());
    }
    let bytes = (threads * words * 8) as f64;
    println!(
        "{{\"threads\": {threads}, \"bytes\": {bytes}, \"seconds\": {best:.6}, \"gb_per_s\": {:.2}, \"check\": {}}}",
        bytes / best / 1e9,
        check % 1000
    );
}

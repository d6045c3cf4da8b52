//! Measures read bandwidth from RAM with N threads (default 2), the ceiling for token
//! generation: a decode step must stream every weight once, so tokens/s can never exceed
//! bandwidth / bytes-per-token. BENCHMARKS.md reports tg as a fraction of this roofline.
//!
//! One sequential stream per core leaves bandwidth unused on many machines (on the 2-core
//! benchmark VM: 21.6 GB/s with one stream per thread, 31 with four), so each thread reads
//! its buffer as 1, 2, 4 and 8 interleaved streams, each with a software prefetch 1 KiB
//! ahead, and the best reading of all is reported: the most the machine gave, which is the
//! honest denominator for a roofline. The buffers ask for transparent huge pages, as an
//! eager load's weights do (`gguf`'s heap copy): on that VM they read 33-35 GB/s against
//! 29-32 with 4 KiB pages.
//!
//!   cargo run --release -p torchless-models --example membw -- [threads] [MiB per thread]

use std::time::Instant;

/// Bytes read ahead of each stream's position.
const PREFETCH_AHEAD: usize = 1024;

/// Asks for the line holding `word` to be brought into L1 (nothing where there is no hint).
#[inline]
fn prefetch(word: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            word as *const u64 as *const i8,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

/// Sum of `buf` read as `streams` equal parts side by side, 64 bytes of each in turn.
fn sum(buf: &[u64], streams: usize) -> u64 {
    let per = buf.len() / streams / 8 * 8;
    // Eight independent lanes so the loop is bound by loads, not by one add chain.
    let mut acc = [0u64; 8];
    for i in (0..per).step_by(8) {
        for s in 0..streams {
            let at = s * per + i;
            if let Some(ahead) = buf.get(at + PREFETCH_AHEAD / 8) {
                prefetch(ahead);
            }
            for (a, w) in acc.iter_mut().zip(&buf[at..at + 8]) {
                *a = a.wrapping_add(*w);
            }
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
        .map(|t| {
            // Zeroed (untouched) first, so that the hint applies when the values are written.
            let mut b = vec![0u64; words];
            gguf::ask_for_huge_pages(&b);
            for (i, w) in b.iter_mut().enumerate() {
                *w = i as u64 ^ t as u64;
            }
            b
        })
        .collect();
    let (mut best, mut best_streams) = (f64::MAX, 1);
    let mut check = 0u64;
    // Rounds over the stream counts, so that a noisy moment hurts one reading, not a column.
    for _ in 0..3 {
        for streams in [1, 2, 4, 8] {
            let t0 = Instant::now();
            let sums: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = bufs
                    .iter()
                    .map(|b| s.spawn(move || sum(b, streams)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let dt = t0.elapsed().as_secs_f64();
            if dt < best {
                (best, best_streams) = (dt, streams);
            }
            check = check.wrapping_add(sums.iter().sum::<u64>());
        }
    }
    let bytes = (threads * words * 8) as f64;
    println!(
        "{{\"threads\": {threads}, \"streams\": {best_streams}, \"bytes\": {bytes}, \"seconds\": {best:.6}, \"gb_per_s\": {:.2}, \"check\": {}}}",
        bytes / best / 1e9,
        check % 1000
    );
}

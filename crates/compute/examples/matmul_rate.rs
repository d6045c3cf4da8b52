//! One weight-matrix product repeated, reporting GFLOP/s: a quick A/B probe for kernel and
//! blocking changes at real model shapes (criterion's `matmul` bench covers the small ones).
//!
//!   cargo run --release -p torchless-compute --example matmul_rate -- TYPE ROWS COLS TOKENS [THREADS] [REPS]

use compute::{matmul, WeightView};
use quant::GgmlType;
use std::time::Instant;

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

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let ty = GgmlType::from_name(&a[0]).expect("a tensor type name such as f16 or q8_0");
    let num = |i: usize, d: usize| a.get(i).map_or(d, |v| v.parse().expect("a number"));
    let (rows, cols, n) = (num(1, 8192), num(2, 2048), num(3, 128));
    compute::set_threads(num(4, 2));
    let reps = num(5, 20);
    let w = values(rows * cols, 7);
    let rb = ty.row_bytes(cols as u64).expect("cols fit the block") as usize;
    let mut bytes = vec![0u8; rows * rb];
    for (src, dst) in w.chunks_exact(cols).zip(bytes.chunks_exact_mut(rb)) {
        quant::quantize_row(ty, src, dst).expect("quantize");
    }
    let view = WeightView::new(ty, rows, cols, &bytes).expect("view");
    let x = values(n * cols, 3);
    let mut out = vec![0f32; n * rows];
    let mut qbuf = Vec::new();
    matmul(&view, &x, n, &mut out, &mut qbuf).expect("matmul");
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t0 = Instant::now();
        matmul(&view, &x, n, &mut out, &mut qbuf).expect("matmul");
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (rows * cols * n) as f64;
    println!(
        "{} {rows}x{cols} x {n} tokens: {:.3} ms, {:.1} GFLOP/s (best of {reps})",
        ty.name(),
        best * 1e3,
        flops / best / 1e9
    );
}

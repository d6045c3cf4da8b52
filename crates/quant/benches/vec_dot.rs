//! One 4096-element row dot per iteration, for every weight type and every kernel level this
//! CPU can run (`scalar`, `avx2`, `avx512`), so the levels can be compared directly, and the
//! four-activation-row (`x4`) and four-weight-row (`w4`) kernels against four single calls:
//! `cargo bench -p torchless-quant --bench vec_dot [-- FILTER]`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use quant::dispatch::{kernel, kernel_tile, kernel_w4, kernel_x4, scalar_kernel, SimdLevel};
use quant::order::{repacked_dot, repacked_q4_0_tile, tiled_dot};
use quant::GgmlType;

const N: usize = 4096;

fn row(seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..N)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn encode(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    quant::quantize_row(ty, x, &mut out).unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("vec_dot_4096");
    group.throughput(Throughput::Elements(N as u64));
    for ty in GgmlType::all().filter(|&t| scalar_kernel(t).is_some()) {
        let w = encode(ty, &row(1));
        let x = encode(ty.vec_dot_type(), &row(2));
        for level in SimdLevel::ALL {
            let Some(f) = kernel(ty, level) else {
                continue;
            };
            group.bench_function(format!("{ty}/{}", level.name()), |b| {
                b.iter(|| f(black_box(N), black_box(&w), black_box(&x)))
            });
        }
    }
    group.finish();

    // One weight row against four activation rows (the batched matmul's inner step), against
    // four calls of the single-row kernel of the same level.
    let mut group = c.benchmark_group("vec_dot_4096_times_4");
    group.throughput(Throughput::Elements(4 * N as u64));
    for ty in GgmlType::all().filter(|&t| scalar_kernel(t).is_some()) {
        let w = encode(ty, &row(1));
        let xs: Vec<Vec<u8>> = (2..6).map(|s| encode(ty.vec_dot_type(), &row(s))).collect();
        for level in SimdLevel::ALL {
            let (Some(one), Some(four)) = (kernel(ty, level), kernel_x4(ty, level)) else {
                continue;
            };
            group.bench_function(format!("{ty}/{}/single", level.name()), |b| {
                b.iter(|| {
                    xs.iter()
                        .map(|x| one(black_box(N), black_box(&w), black_box(x)))
                        .sum::<f32>()
                })
            });
            group.bench_function(format!("{ty}/{}/x4", level.name()), |b| {
                b.iter(|| {
                    four(
                        black_box(N),
                        black_box(&w),
                        [&xs[0], &xs[1], &xs[2], &xs[3]],
                    )
                })
            });
            if let Some(four_w) = kernel_w4(ty, level) {
                let ws: Vec<Vec<u8>> = (6..10).map(|s| encode(ty, &row(s))).collect();
                group.bench_function(format!("{ty}/{}/w4", level.name()), |b| {
                    b.iter(|| {
                        four_w(
                            black_box(N),
                            [&ws[0], &ws[1], &ws[2], &ws[3]],
                            black_box(&xs[0]),
                        )
                    })
                });
            }
        }
    }
    group.finish();

    // The K-quant kernels in llama.cpp's other matmul orders (repacked Q4_K gemm/gemv, tiled
    // matmul), at the active level, per 4 activation rows like the group above.
    let mut group = c.benchmark_group("llama_cpp_orders_4096_times_4");
    group.throughput(Throughput::Elements(4 * N as u64));
    for ty in GgmlType::all().filter(|&t| tiled_dot(t).is_some()) {
        let w = encode(ty, &row(1));
        let xs: Vec<Vec<u8>> = (2..6).map(|s| encode(ty.vec_dot_type(), &row(s))).collect();
        let (w, xs) = (&w, &xs);
        let four_rows = |one: quant::dispatch::VecDotFn| {
            move || {
                xs.iter()
                    .map(|x| one(black_box(N), black_box(w), black_box(x)))
                    .sum::<f32>()
            }
        };
        let t = tiled_dot(ty).unwrap();
        let f = four_rows(t.one);
        group.bench_function(format!("{ty}/tiled/single"), |b| b.iter(&f));
        if let Some(x4) = t.x4 {
            group.bench_function(format!("{ty}/tiled/x4"), |b| {
                b.iter(|| x4(black_box(N), black_box(w), [&xs[0], &xs[1], &xs[2], &xs[3]]))
            });
        }
        if let Some(r) = repacked_dot(ty, 8) {
            let f = four_rows(r.gemv);
            group.bench_function(format!("{ty}/repacked-gemv/single"), |b| b.iter(&f));
            let f = four_rows(r.gemm);
            group.bench_function(format!("{ty}/repacked-gemm/single"), |b| b.iter(&f));
            group.bench_function(format!("{ty}/repacked-gemm/x4"), |b| {
                b.iter(|| (r.gemm_x4)(black_box(N), black_box(w), [&xs[0], &xs[1], &xs[2], &xs[3]]))
            });
        }
    }
    group.finish();

    // Register-blocked tiles (weight rows x tokens per call) at each level, throughput per
    // multiply-add, against the single-row kernel of the same order: the batched matmul's
    // inner step. Q4_0's tile is llama.cpp's repacked order (its single-row reference is
    // scalar), the others `vec_dot`'s.
    let mut group = c.benchmark_group("tiles_4096");
    group.throughput(Throughput::Elements(N as u64));
    for ty in GgmlType::all().filter(|&t| scalar_kernel(t).is_some()) {
        for level in SimdLevel::ALL {
            let tiles = [
                kernel_tile(ty, level).map(|t| ("vec_dot", t)),
                (ty == GgmlType::Q4_0)
                    .then(|| repacked_q4_0_tile(level).map(|t| ("repacked", t)))
                    .flatten(),
            ];
            for (order, t) in tiles.into_iter().flatten() {
                let ws: Vec<Vec<u8>> = (0..t.rows)
                    .map(|s| encode(ty, &row(s as u64 + 10)))
                    .collect();
                let xs: Vec<Vec<u8>> = (0..t.toks)
                    .map(|s| encode(ty.vec_dot_type(), &row(s as u64 + 50)))
                    .collect();
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                let xr: Vec<&[u8]> = xs.iter().map(|r| r.as_slice()).collect();
                let mut out = vec![0f32; t.rows * t.toks];
                group.throughput(Throughput::Elements((N * t.rows * t.toks) as u64));
                group.bench_function(
                    format!("{ty}/{}/{order}/{}x{}", level.name(), t.rows, t.toks),
                    |b| b.iter(|| (t.f)(black_box(N), black_box(&wr), black_box(&xr), &mut out)),
                );
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the machine is small and shared.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);

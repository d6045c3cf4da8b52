use super::*;

fn data(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.731 + seed) * 1.37).sin())
        .collect()
}

/// Straightforward f64 attention for one query.
/// `flash`: scale before the soft cap (flash attention) rather than after (soft_max_ext).
fn naive(
    q: &[f32],
    ks: &[Vec<f32>],
    vs: &[Vec<f32>],
    scale: f64,
    cap: f64,
    flash: bool,
) -> Vec<f64> {
    let mut s: Vec<f64> = ks
        .iter()
        .map(|k| {
            let d: f64 = k.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum();
            match (cap > 0.0, flash) {
                (false, _) => d * scale,
                (true, false) => cap * (d / cap).tanh() * scale,
                (true, true) => cap * (d * scale / cap).tanh(),
            }
        })
        .collect();
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = s
        .iter_mut()
        .map(|x| {
            *x = (*x - m).exp();
            *x
        })
        .sum();
    let mut o = vec![0f64; vs[0].len()];
    for (w, v) in s.iter().zip(vs) {
        for (a, b) in o.iter_mut().zip(v) {
            *a += w / z * *b as f64;
        }
    }
    o
}

fn run(dtype: KvDtype, n_tokens: usize, window: usize, cap: f32) -> (Vec<f32>, Vec<Vec<f64>>) {
    run_at(
        crate::simd_level(),
        dtype,
        n_tokens,
        window,
        cap,
        (4, 2, 8, 6),
    )
}

fn run_at(
    level: SimdLevel,
    dtype: KvDtype,
    n_tokens: usize,
    window: usize,
    cap: f32,
    (n_head, nkv, dk, dv): (usize, usize, usize, usize),
) -> (Vec<f32>, Vec<Vec<f64>>) {
    let mut cache = KvCache::new(dtype, 128, nkv, dk, dv);
    let k = data(n_tokens * nkv * dk, 0.3);
    let v = data(n_tokens * nkv * dv, 1.1);
    let q = data(n_tokens * n_head * dk, 2.0);
    for t in 0..n_tokens {
        cache
            .store(
                t,
                &k[t * nkv * dk..][..nkv * dk],
                &v[t * nkv * dv..][..nkv * dv],
            )
            .unwrap();
    }
    let p = AttnParams {
        n_head,
        scale: 0.35,
        softcap: cap,
        window,
    };
    let mut out = vec![0f32; n_tokens * n_head * dv];
    attention_at(level, &p, &cache, &q, n_tokens, 0, &mut out);
    let mut want = Vec::new();
    for t in 0..n_tokens {
        for h in 0..n_head {
            let kvh = h / (n_head / nkv);
            let first = if window > 0 {
                (t + 1).saturating_sub(window)
            } else {
                0
            };
            let ks: Vec<Vec<f32>> = (first..=t)
                .map(|j| k[(j * nkv + kvh) * dk..][..dk].to_vec())
                .collect();
            let vs: Vec<Vec<f32>> = (first..=t)
                .map(|j| v[(j * nkv + kvh) * dv..][..dv].to_vec())
                .collect();
            want.push(naive(
                &q[(t * n_head + h) * dk..][..dk],
                &ks,
                &vs,
                0.35,
                cap as f64,
                dtype == KvDtype::F16,
            ));
        }
    }
    (out, want)
}

fn max_err(out: &[f32], want: &[Vec<f64>]) -> f64 {
    let flat: Vec<f64> = want.iter().flatten().copied().collect();
    out.iter()
        .zip(&flat)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn f32_cache_matches_naive_with_gqa_window_and_softcap() {
    for (window, cap) in [(0, 0.0), (3, 0.0), (0, 1.5)] {
        let (out, want) = run(KvDtype::F32, 10, window, cap);
        let e = max_err(&out, &want);
        assert!(e < 1e-6, "window {window} cap {cap}: {e}");
    }
}

#[test]
fn f16_cache_tracks_naive_within_f16_precision() {
    // short batch: flash path with f16 accumulator; long batch: tiled (f32) path
    for n in [10, 70] {
        let (out, want) = run(KvDtype::F16, n, 5, 0.0);
        let e = max_err(&out, &want);
        assert!(e < 4e-3 && e > 0.0, "n {n}: {e}");
    }
}

#[test]
fn first_token_returns_its_value_and_bad_shapes_fail() {
    let mut cache = KvCache::new(KvDtype::F16, 4, 1, 2, 2);
    cache.store(0, &[1.0, 2.0], &[0.5, -0.25]).unwrap();
    let p = AttnParams {
        n_head: 2,
        scale: 1.0,
        softcap: 0.0,
        window: 0,
    };
    let mut out = [0f32; 4];
    attention(&p, &cache, &[1.0, 0.0, 0.0, 1.0], 1, 0, &mut out).unwrap();
    assert_eq!(out, [0.5, -0.25, 0.5, -0.25]);
    assert!(cache.store(2, &[0.0; 2], &[0.0; 2]).is_err());
    assert!(cache.store(4, &[0.0; 2], &[0.0; 2]).is_err());
    assert!(attention(&p, &cache, &[1.0; 4], 1, 1, &mut out).is_err());
    cache.truncate(0);
    assert!(cache.is_empty());
}

fn levels() -> Vec<SimdLevel> {
    // The levels these ops have arithmetic for (x86-64's and the portable one).
    SimdLevel::native()
        .filter(|&l| l <= quant::dispatch::detected_level())
        .filter(|l| matches!(l, SimdLevel::Scalar | SimdLevel::Avx2 | SimdLevel::Avx512))
        .collect()
}

#[test]
fn f16_cache_at_every_level_and_head_size() {
    // Head sizes below, at and above the vector widths, so whole vectors and leftovers run;
    // 70 tokens take the tiled kernel across two KV tiles.
    for level in levels() {
        for dims in [
            (4, 2, 8, 6),
            (4, 2, 64, 64),
            (2, 1, 256, 256),
            (3, 1, 72, 40),
        ] {
            for (n, window, cap) in [(10, 0, 0.0), (10, 4, 1.5), (70, 0, 0.0), (70, 33, 2.0)] {
                let (out, want) = run_at(level, KvDtype::F16, n, window, cap, dims);
                let e = max_err(&out, &want);
                assert!(e < 4e-3, "{level:?} {dims:?} n {n}: {e}");
            }
        }
    }
}

/// Deterministic pseudo-random floats with the awkward values mixed in.
fn adversarial(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match i % 23 {
                5 => -0.0,
                11 => 0.0,
                17 => scale * 0.999,
                _ => ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale,
            }
        })
        .collect()
}

fn simd_levels() -> Vec<SimdLevel> {
    levels()
        .into_iter()
        .filter(|&l| l != SimdLevel::Scalar)
        .collect()
}

#[test]
fn mad_and_scale_f16_equal_their_references() {
    use kernels::*;
    for level in simd_levels() {
        for n in [0, 1, 7, 8, 31, 32, 63, 64, 65, 128, 200, 256] {
            for (seed, mag) in [(1, 1.0f32), (2, 60000.0), (3, 1e-5)] {
                let y0: Vec<f16> = adversarial(n, seed, mag)
                    .into_iter()
                    .map(f16::from_f32)
                    .collect();
                let x: Vec<f16> = adversarial(n, seed + 7, mag)
                    .into_iter()
                    .map(f16::from_f32)
                    .collect();
                for v in [0.0f32, -0.0, 1.0, 0.37, 3.5, 1e-3, -2.0] {
                    let (mut a, mut b) = (y0.clone(), y0.clone());
                    mad_f16(level, &mut a, &x, v);
                    mad_f16_ref(level, &mut b, &x, v);
                    let bits = |s: &[f16]| s.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "mad {level:?} n {n} v {v}");
                    let (mut a, mut b) = (y0.clone(), y0.clone());
                    scale_f16(level, &mut a, v);
                    scale_f16_ref(&mut b, v);
                    assert_eq!(bits(&a), bits(&b), "scale {level:?} n {n} v {v}");
                }
            }
        }
    }
}

#[test]
fn gemm_acc_equals_reference_chains() {
    use kernels::*;
    for level in simd_levels() {
        for (m, k, n) in [
            (1, 1, 1),
            (3, 8, 64),
            (16, 64, 64),
            (5, 70, 40),
            (4, 64, 256),
            (7, 3, 19),
        ] {
            let a = adversarial(m * k, 1, 3.0);
            let b = adversarial(k * n, 2, 1e4);
            let c0 = adversarial(m * n, 3, 0.5);
            let (mut x, mut y) = (c0.clone(), c0.clone());
            gemm_acc(level, &mut x, &a, &b, m, k, n);
            gemm_acc_ref(level, &mut y, &a, &b, m, k, n);
            let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "{level:?} {m}x{k}x{n}");
        }
    }
}

#[test]
fn softmax_tile_equals_reference_lanes_and_sum() {
    use kernels::*;
    for level in simd_levels() {
        for n in [64, 16, 8, 70, 5] {
            for (seed, mag) in [(1, 1.0f32), (2, 30.0), (3, 200.0), (4, 1e-3)] {
                let mut x = adversarial(n, seed, mag);
                // Masked positions, as the tiled kernel leaves them.
                for i in (0..n).step_by(9) {
                    x[i] = f32::NEG_INFINITY;
                }
                for max in [0.0f32, mag, -mag, 150.0] {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    let sa = softmax_tile(level, &mut a, max);
                    let sb = softmax_tile_ref(level, &mut b, max);
                    let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "{level:?} n {n} mag {mag} max {max}");
                    assert_eq!(sa.to_bits(), sb.to_bits(), "{level:?} n {n} sum");
                }
            }
        }
    }
}

#[test]
fn polynomial_exp_is_close_to_libm_and_handles_the_extremes() {
    use kernels::{expf_avx2_lane, expf_avx512_lane};
    for f in [expf_avx2_lane, expf_avx512_lane] {
        for i in -1700..1700 {
            let x = i as f32 * 0.05;
            let (a, b) = (f(x), x.exp());
            assert!(
                (a - b).abs() <= b * 4e-7 + f32::MIN_POSITIVE,
                "{x}: {a} vs {b}"
            );
        }
        assert_eq!(f(f32::NEG_INFINITY), 0.0);
        assert_eq!(f(-200.0), 0.0);
        assert_eq!(f(100.0), f32::INFINITY);
        assert!(f(f32::NAN).is_nan());
    }
}

#[test]
fn cache_keeps_every_head_when_it_grows() {
    let (nkv, dk, dv) = (3, 4, 2);
    let mut cache = KvCache::new(KvDtype::F32, 300, nkv, dk, dv);
    for pos in 0..300 {
        let k: Vec<f32> = (0..nkv * dk).map(|i| (pos * 100 + i) as f32).collect();
        let v: Vec<f32> = (0..nkv * dv).map(|i| -((pos * 100 + i) as f32)).collect();
        cache.store(pos, &k, &v).unwrap();
    }
    let Store::F32 { k, v } = &cache.store else {
        unreachable!()
    };
    for h in 0..nkv {
        for pos in 0..300 {
            let row = &k[(h * cache.alloc + pos) * dk..][..dk];
            assert_eq!(row[1], (pos * 100 + h * dk + 1) as f32);
            assert_eq!(
                v[(h * cache.alloc + pos) * dv],
                -((pos * 100 + h * dv) as f32)
            );
        }
    }
}

#[test]
fn swiglu_equals_reference_lanes() {
    use kernels::*;
    for level in simd_levels() {
        for n in [0, 5, 16, 37, 64, 1536] {
            for (seed, mag) in [(1, 1.0f32), (2, 20.0), (3, 150.0)] {
                let g = adversarial(n, seed, mag);
                let u = adversarial(n, seed + 3, 2.0);
                let (mut a, mut b) = (g.clone(), g.clone());
                swiglu(level, &mut a, &u);
                swiglu_ref(level, &mut b, &u);
                let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{level:?} n {n} mag {mag}");
            }
        }
    }
}

/// Feeds `n` positions in batches of `ubatch` into `cache`, attending after each batch;
/// returns every output row.
fn feed_batches(cache: &mut KvCache, p: &AttnParams, n: usize, ubatch: usize) -> Vec<f32> {
    let (nkv, dk, dv) = (cache.n_head_kv, cache.dk, cache.dv);
    let k = data(n * nkv * dk, 0.3);
    let v = data(n * nkv * dv, 1.1);
    let q = data(n * p.n_head * dk, 2.0);
    let mut out = vec![0f32; n * p.n_head * dv];
    for t0 in (0..n).step_by(ubatch) {
        let m = ubatch.min(n - t0);
        for t in t0..t0 + m {
            let (kr, vr) = (
                &k[t * nkv * dk..][..nkv * dk],
                &v[t * nkv * dv..][..nkv * dv],
            );
            cache.store(t, kr, vr).unwrap();
        }
        let qs = &q[t0 * p.n_head * dk..][..m * p.n_head * dk];
        let o = &mut out[t0 * p.n_head * dv..][..m * p.n_head * dv];
        attention(p, cache, qs, m, t0, o).unwrap();
    }
    out
}

#[test]
fn sliding_window_ring_equals_a_full_cache_bit_for_bit() {
    let (n_head, nkv, dk, dv) = (4, 2, 8, 6);
    let p = AttnParams {
        n_head,
        scale: 0.35,
        softcap: 0.0,
        window: 40,
    };
    // ubatch 64 takes the tiled kernel for full batches and the decode kernel for the tail;
    // 1 is decoding. 700 positions wrap the 256-slot ring twice.
    for dtype in [KvDtype::F16, KvDtype::F32] {
        for ubatch in [64, 1, 37] {
            let mut ring = KvCache::windowed(dtype, 1000, p.window, ubatch, nkv, dk, dv);
            assert_eq!(ring.slots(), 256);
            let mut full = KvCache::new(dtype, 1000, nkv, dk, dv);
            let a = feed_batches(&mut ring, &p, 700, ubatch);
            let b = feed_batches(&mut full, &p, 700, ubatch);
            assert_eq!(a, b, "{dtype:?} ubatch {ubatch}");
            assert_eq!(ring.max_bytes() * 1000, full.max_bytes() * 256);
        }
    }
}

#[test]
fn ring_truncation_only_where_the_window_is_still_stored() {
    let p = AttnParams {
        n_head: 2,
        scale: 0.35,
        softcap: 0.0,
        window: 40,
    };
    let mut ring = KvCache::windowed(KvDtype::F16, 1000, p.window, 64, 2, 8, 6);
    feed_batches(&mut ring, &p, 700, 64);
    // Slots hold positions 444..700; a query at n sees n - 39..n.
    assert!(ring.can_truncate(700) && ring.can_truncate(483));
    assert!(!ring.can_truncate(482) && !ring.can_truncate(10));
    assert!(ring.truncate(600));
    assert_eq!(ring.len(), 600);
    // A query past what is stored is refused, not answered from overwritten slots.
    let mut small = KvCache::windowed(KvDtype::F16, 1000, 300, 1, 2, 8, 6);
    let mut wide = p;
    wide.window = 300;
    feed_batches(&mut small, &wide, 600, 1);
    assert!(!small.truncate(300));
    assert!(small.is_empty());
    let q = data(2 * 8, 1.0);
    let mut o = vec![0f32; 2 * 6];
    let full = AttnParams { window: 0, ..p };
    let mut c = KvCache::windowed(KvDtype::F16, 1000, 300, 1, 2, 8, 6);
    feed_batches(&mut c, &wide, 600, 1);
    let err = attention(&full, &c, &q, 1, 599, &mut o).unwrap_err();
    assert!(err.to_string().contains("oldest cached position"), "{err}");
    // Truncating a full cache always works.
    let mut f = KvCache::new(KvDtype::F32, 1000, 2, 8, 6);
    feed_batches(&mut f, &p, 100, 64);
    assert!(f.truncate(3) && f.len() == 3);
}

/// Multi-head latent attention keeps one `[latent | rope]` row per position and reads the
/// values as the rows' first `dv` elements. Against an ordinary one-KV-head cache holding the
/// same rows as keys and their prefixes as values, every path gives the same bits: F32
/// (plain), F16 decode rows and the F16 tiled kernel, at every SIMD level, with the real
/// DeepSeek dimensions (K 576 = 512 + 64, V 512) and small ones.
#[test]
fn latent_cache_equals_a_cache_with_the_values_copied_bit_for_bit() {
    for (n_head, dk, dv) in [(4, 40, 32), (2, 576, 512)] {
        for dtype in [KvDtype::F32, KvDtype::F16] {
            for n in [1, 7, 70] {
                let k = adversarial(n * dk, 11, 1.0);
                let q = adversarial(n * n_head * dk, 12, 0.05);
                let mut latent = KvCache::latent(dtype, 128, dk, dv);
                let mut plain = KvCache::new(dtype, 128, 1, dk, dv);
                for t in 0..n {
                    let row = &k[t * dk..][..dk];
                    latent.store(t, row, &[]).unwrap();
                    plain.store(t, row, &row[..dv]).unwrap();
                }
                assert_eq!(latent.max_bytes() * (dk + dv), plain.max_bytes() * dk);
                let p = AttnParams {
                    n_head,
                    scale: 0.125,
                    softcap: 0.0,
                    window: 0,
                };
                for level in levels() {
                    let mut a = vec![0f32; n * n_head * dv];
                    let mut b = vec![1f32; n * n_head * dv];
                    attention_at(level, &p, &latent, &q, n, 0, &mut a);
                    attention_at(level, &p, &plain, &q, n, 0, &mut b);
                    let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{dtype:?} {level:?} dk {dk} n {n}");
                }
                // The public entry point accepts DeepSeek's head sizes on an F16 cache.
                let mut o = vec![0f32; n * n_head * dv];
                attention(&p, &latent, &q, n, 0, &mut o).unwrap();
                assert!(o.iter().all(|x| x.is_finite()));
            }
        }
    }
    // Latent caches take no values of their own; their bytes are dk per position.
    let mut c = KvCache::latent(KvDtype::F16, 10, 40, 32);
    assert!(c.store(0, &[0.0; 40], &[0.0; 32]).is_err());
    assert_eq!(c.max_bytes(), 10 * 40 * 2);
    assert!(c.is_latent());
}

/// `attention_many` runs each call exactly as `attention` alone does: several sequences of
/// different lengths (decode rows and a tiled prefill), F16 and F32 caches, a window and a
/// soft cap, compared bit for bit.
#[test]
fn attention_many_equals_one_call_at_a_time() {
    for dtype in [KvDtype::F16, KvDtype::F32] {
        let (nh, nkv, dk, dv) = (4, 2, 16, 8);
        let p = AttnParams {
            n_head: nh,
            scale: 0.3,
            softcap: 20.0,
            window: 40,
        };
        // (cached positions before, tokens in this call)
        let shapes = [(0usize, 1usize), (30, 1), (5, 70), (90, 3), (0, 64)];
        let mut caches = Vec::new();
        let mut qs = Vec::new();
        for (i, &(before, n)) in shapes.iter().enumerate() {
            let mut c = KvCache::new(dtype, 256, nkv, dk, dv);
            for pos in 0..before + n {
                let seed = (i * 1000 + pos) as f32;
                c.store(pos, &data(nkv * dk, seed), &data(nkv * dv, seed + 0.5))
                    .unwrap();
            }
            caches.push(c);
            qs.push(data(n * nh * dk, i as f32 * 7.0));
        }
        let mut alone: Vec<Vec<f32>> = Vec::new();
        for (i, &(before, n)) in shapes.iter().enumerate() {
            let mut out = vec![0f32; n * nh * dv];
            attention(&p, &caches[i], &qs[i], n, before, &mut out).unwrap();
            alone.push(out);
        }
        let mut outs: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&(_, n)| vec![0f32; n * nh * dv])
            .collect();
        let mut calls: Vec<AttnCall> = outs
            .iter_mut()
            .enumerate()
            .map(|(i, out)| AttnCall {
                params: &p,
                cache: &caches[i],
                q: &qs[i],
                n_tokens: shapes[i].1,
                start_pos: shapes[i].0,
                out,
            })
            .collect();
        attention_many(&mut calls).unwrap();
        for (i, (a, b)) in alone.iter().zip(&outs).enumerate() {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{dtype:?} call {i} differs from its own call");
        }
        // A bad call is an error, not a panic.
        let mut short = vec![0f32; 3];
        let mut bad = [AttnCall {
            params: &p,
            cache: &caches[0],
            q: &qs[0],
            n_tokens: 1,
            start_pos: 0,
            out: &mut short,
        }];
        assert!(attention_many(&mut bad).is_err());
    }
}

/// Keys and values copied from another cache holding the same positions attend exactly as
/// stored ones: into an empty cache, onto a partly filled one, across a ring that wraps
/// during the copy; refused (nothing changed) when the source's ring has overwritten them
/// or the layouts differ.
#[test]
fn copied_prefix_attends_as_the_stored_one() {
    let p = AttnParams {
        n_head: 4,
        scale: 0.35,
        softcap: 0.0,
        window: 40,
    };
    let (nkv, dk, dv) = (2, 8, 6);
    for dtype in [KvDtype::F16, KvDtype::F32] {
        for (window, n, have) in [(0, 90, 0), (0, 90, 33), (40, 250, 0), (40, 300, 120)] {
            let p = AttnParams { window, ..p };
            let make = || KvCache::windowed(dtype, 1000, window, 64, nkv, dk, dv);
            let mut src = make();
            let want = feed_batches(&mut src, &p, n + 1, 64);
            let mut dst = make();
            // `dst` computed its first `have` positions itself (the same ones).
            feed_batches(&mut dst, &p, have, 64);
            assert!(
                dst.copy_prefix_from(&src, n),
                "{dtype:?} {window} {n} {have}"
            );
            assert_eq!(dst.len(), n);
            // The next position, stored and attended in `dst`, equals the source's row.
            let (k, v) = (data((n + 1) * nkv * dk, 0.3), data((n + 1) * nkv * dv, 1.1));
            dst.store(n, &k[n * nkv * dk..], &v[n * nkv * dv..])
                .unwrap();
            let q = data((n + 1) * p.n_head * dk, 2.0);
            let mut out = vec![0f32; p.n_head * dv];
            attention(&p, &dst, &q[n * p.n_head * dk..], 1, n, &mut out).unwrap();
            assert_eq!(
                out,
                want[n * p.n_head * dv..],
                "{dtype:?} {window} {n} {have}"
            );
        }
        // The ring (256 slots) no longer holds position 0 after 300: refused, dst unchanged.
        let mut src = KvCache::windowed(dtype, 1000, 40, 64, nkv, dk, dv);
        feed_batches(&mut src, &AttnParams { window: 40, ..p }, 300, 64);
        let mut dst = KvCache::windowed(dtype, 1000, 40, 64, nkv, dk, dv);
        assert!(!dst.copy_prefix_from(&src, 280) && dst.is_empty());
        // Other head counts, or a full cache from a ring: refused.
        let mut other = KvCache::new(dtype, 1000, 1, dk, dv);
        assert!(!other.copy_prefix_from(&src, 10) && other.is_empty());
        let mut full = KvCache::new(dtype, 1000, nkv, dk, dv);
        assert!(!full.copy_prefix_from(&src, 250));
    }
}

/// The tiled kernel runs every query head of a KV head in one task (GQA) and cuts tokens
/// into tiles by the group size; each row must come out exactly as when its head has a KV
/// head of its own (one head per task).
#[test]
fn tiled_rows_do_not_depend_on_how_heads_share_a_task() {
    let (n_tokens, dk, dv) = (150, 64, 64);
    for level in levels() {
        for (n_head, nkv) in [(8, 2), (12, 1), (6, 3)] {
            let group = n_head / nkv;
            let k = data(n_tokens * nkv * dk, 0.3);
            let v = data(n_tokens * nkv * dv, 1.1);
            let q = data(n_tokens * n_head * dk, 2.0);
            let p = AttnParams {
                n_head,
                scale: 0.125,
                softcap: 0.0,
                window: 0,
            };
            let mut shared = KvCache::new(KvDtype::F16, 256, nkv, dk, dv);
            // The same keys and values repeated for every query head.
            let mut own = KvCache::new(KvDtype::F16, 256, n_head, dk, dv);
            for t in 0..n_tokens {
                let (kt, vt) = (
                    &k[t * nkv * dk..][..nkv * dk],
                    &v[t * nkv * dv..][..nkv * dv],
                );
                shared.store(t, kt, vt).unwrap();
                let kr: Vec<f32> = (0..n_head)
                    .flat_map(|h| kt[h / group * dk..][..dk].to_vec())
                    .collect();
                let vr: Vec<f32> = (0..n_head)
                    .flat_map(|h| vt[h / group * dv..][..dv].to_vec())
                    .collect();
                own.store(t, &kr, &vr).unwrap();
            }
            let mut a = vec![0f32; n_tokens * n_head * dv];
            let mut b = a.clone();
            attention_at(level, &p, &shared, &q, n_tokens, 0, &mut a);
            attention_at(level, &p, &own, &q, n_tokens, 0, &mut b);
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{level:?} {n_head}/{nkv} heads: grouped rows differ"
            );
        }
    }
}

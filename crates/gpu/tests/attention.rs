//! Attention over the f16 KV cache against the CPU backend's (`compute::attention` with an
//! F16 `KvCache`, the llama.cpp default) and against an f64 softmax over the same
//! f16-rounded keys and values: GQA, causal mask, sliding window over a ring that wraps,
//! soft-capping, prefill chunks (the CPU's tiled kernel from 64 queries) and single-token
//! decode steps.
//!
//! Tolerances: 2e-5 of the largest output against the f64 reference (f32 arithmetic only);
//! 1e-2 against the CPU, whose flash attention rounds Q to f16 and stores its V accumulator
//! in f16 after every key, an error that grows with the keys seen (5e-3 at 513).

mod common;

use common::{assert_close, data, dev};
use compute::{AttnParams, KvCache, KvDtype};
use gpu::{AttnArgs, Rows};
use half::f16;

struct Case {
    n_head: usize,
    n_kv: usize,
    dk: usize,
    dv: usize,
    window: usize,
    softcap: f32,
    capacity: usize,
    ubatch: usize,
    /// Token counts fed one after the other.
    chunks: &'static [usize],
}

fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// f64 attention of one query head over keys/values `first..=pos` of the history.
fn naive(
    c: &Case,
    q: &[f32],
    ks: &[Vec<f32>],
    vs: &[Vec<f32>],
    g: usize,
    first: usize,
    pos: usize,
) -> Vec<f32> {
    let scale = 1.0 / (c.dk as f64).sqrt();
    let s: Vec<f64> = (first..=pos)
        .map(|j| {
            let k = &ks[j][g * c.dk..][..c.dk];
            let dot: f64 = k.iter().zip(q).map(|(&a, &b)| a as f64 * b as f64).sum();
            let s = dot * scale;
            if c.softcap > 0.0 {
                let cap = c.softcap as f64;
                cap * (s / cap).tanh()
            } else {
                s
            }
        })
        .collect();
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
    let mut o = vec![0f64; c.dv];
    for (i, j) in (first..=pos).enumerate() {
        let p = (s[i] - m).exp() / z;
        for (a, &v) in o.iter_mut().zip(&vs[j][g * c.dv..][..c.dv]) {
            *a += p * v as f64;
        }
    }
    o.into_iter().map(|v| v as f32).collect()
}

/// The device with attention's u32 reader of the cache whatever the adapter has (no
/// `shader-f16`).
fn u32_dev() -> &'static gpu::GpuDevice {
    static DEV: std::sync::OnceLock<gpu::GpuDevice> = std::sync::OnceLock::new();
    DEV.get_or_init(|| {
        let opts = gpu::DeviceOptions {
            no_f16: true,
            ..Default::default()
        };
        let d = gpu::GpuDevice::open_with(gpu::BackendKind::Any, opts)
            .expect("the device dev() opened");
        assert!(!d.uses_f16());
        d
    })
}

/// `c` on the default device (the f16 reader of the cache where the adapter has
/// `shader-f16`, as lavapipe does) and on the u32 reader, both to the same tolerances: the
/// two read the same f16 values, so they differ only in f32 rounding.
fn check(c: &Case) {
    assert_eq!(dev().uses_f16(), dev().adapter().shader_f16);
    check_on(c, dev());
    check_on(c, u32_dev());
}

fn check_on(c: &Case, d: &gpu::GpuDevice) {
    let mut cpu_cache = KvCache::windowed(
        KvDtype::F16,
        c.capacity,
        c.window,
        c.ubatch,
        c.n_kv,
        c.dk,
        c.dv,
    );
    let gpu_cache = d.kv_cache(cpu_cache.slots(), c.n_kv, c.dk, c.dv).unwrap();
    let params = AttnParams {
        n_head: c.n_head,
        scale: 1.0 / (c.dk as f32).sqrt(),
        softcap: c.softcap,
        window: c.window,
    };
    let args = AttnArgs {
        n_head: c.n_head,
        scale: params.scale,
        softcap: c.softcap,
        window: c.window,
    };
    let (krow, vrow) = (c.n_kv * c.dk, c.n_kv * c.dv);
    let (qrow, orow) = (c.n_head * c.dk, c.n_head * c.dv);
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    let mut start = 0;
    for (ci, &n) in c.chunks.iter().enumerate() {
        let seed = 1000 * ci as u64;
        let k: Vec<f32> = data(n * krow, seed + 1).iter().map(|v| v * 2.0).collect();
        let v = data(n * vrow, seed + 2);
        let q: Vec<f32> = data(n * qrow, seed + 3).iter().map(|v| v * 2.0).collect();
        for t in 0..n {
            cpu_cache
                .store(start + t, &k[t * krow..][..krow], &v[t * vrow..][..vrow])
                .unwrap();
            ks.push(round16(&k[t * krow..][..krow]));
            vs.push(round16(&v[t * vrow..][..vrow]));
        }
        let mut want = vec![0f32; n * orow];
        compute::attention(&params, &cpu_cache, &q, n, start, &mut want).unwrap();

        let (kt, vt, qt) = (d.upload(&k), d.upload(&v), d.upload(&q));
        let out = d.tensor(n * orow);
        let mut p = d.pass();
        p.kv_store(
            &gpu_cache,
            Rows::new(&kt, krow),
            Rows::new(&vt, vrow),
            n,
            start,
        )
        .unwrap();
        p.attention(
            &gpu_cache,
            Rows::new(&qt, qrow),
            n,
            start,
            args,
            Rows::new(&out, orow),
        )
        .unwrap();
        d.submit(p);
        let got = d.read(&out);

        let mut exact = vec![0f32; n * orow];
        for t in 0..n {
            let pos = start + t;
            let first = if c.window > 0 {
                (pos + 1).saturating_sub(c.window)
            } else {
                0
            };
            for h in 0..c.n_head {
                let g = h / (c.n_head / c.n_kv);
                let o = naive(
                    c,
                    &q[t * qrow + h * c.dk..][..c.dk],
                    &ks,
                    &vs,
                    g,
                    first,
                    pos,
                );
                exact[t * orow + h * c.dv..][..c.dv].copy_from_slice(&o);
            }
        }
        let what =
            format!(
            "heads {}/{} dims {}/{} window {} softcap {} chunk {ci} ({n} at {start}, f16 reads {})",
            c.n_head, c.n_kv, c.dk, c.dv, c.window, c.softcap, d.uses_f16()
        );
        assert_close(&format!("{what} vs f64"), &got, &exact, 2e-5);
        assert_close(&format!("{what} vs CPU"), &got, &want, 1e-2);
        start += n;
    }
}

#[test]
fn gqa_causal_prefill_then_decode() {
    check(&Case {
        n_head: 8,
        n_kv: 2,
        dk: 64,
        dv: 64,
        window: 0,
        softcap: 0.0,
        capacity: 256,
        ubatch: 512,
        chunks: &[70, 1, 1, 5],
    });
}

/// Gemma-2-like: soft-cap, a sliding window over a ring of 256 slots that wraps (ubatch 64),
/// head dims that differ and exceed one workgroup (dk 160, dv 96).
#[test]
fn sliding_window_ring_and_softcap() {
    check(&Case {
        n_head: 4,
        n_kv: 1,
        dk: 160,
        dv: 96,
        window: 40,
        softcap: 20.0,
        capacity: 4096,
        ubatch: 64,
        chunks: &[64, 64, 64, 64, 33, 1, 1],
    });
}

/// One query head per KV head (no grouping), a single first token.
#[test]
fn single_token_mha() {
    check(&Case {
        n_head: 3,
        n_kv: 3,
        dk: 32,
        dv: 32,
        window: 0,
        softcap: 0.0,
        capacity: 16,
        ubatch: 512,
        chunks: &[1, 1, 2],
    });
}

/// A 512-token prompt (llama.cpp's micro-batch) in one call, then a decode step.
#[test]
fn prompt_of_512_tokens() {
    check(&Case {
        n_head: 4,
        n_kv: 2,
        dk: 64,
        dv: 64,
        window: 0,
        softcap: 0.0,
        capacity: 600,
        ubatch: 512,
        chunks: &[512, 1],
    });
}

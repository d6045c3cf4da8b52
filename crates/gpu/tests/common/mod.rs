//! What the per-operation tests share: the device (a missing driver fails, never skips),
//! deterministic data and the error measures.

#![allow(dead_code)]

use std::sync::OnceLock;

use gpu::{BackendKind, GpuDevice};

/// The adapter every test runs on: the best one of any API (lavapipe in CI). No adapter is a
/// failure that says what to install, so a machine without a driver cannot pass silently.
pub fn dev() -> &'static GpuDevice {
    static DEV: OnceLock<GpuDevice> = OnceLock::new();
    DEV.get_or_init(|| match GpuDevice::open(BackendKind::Any) {
        Ok(d) => {
            eprintln!("GPU tests on {}", d.adapter());
            d
        }
        Err(e @ gpu::GpuError::NoAdapter { .. }) => panic!(
            "the GPU tests need a GPU adapter: {e}\n(in CI: apt-get install mesa-vulkan-drivers, \
             which .ci/run does)"
        ),
        Err(e) => panic!("the GPU tests could not open the device: {e}"),
    })
}

/// `n` values in about [-1, 1] that differ per seed.
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Normalized mean squared error, as llama.cpp's test-backend-ops measures most ops.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut e, mut r) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        e += (g as f64 - w as f64).powi(2);
        r += (w as f64).powi(2);
    }
    e / r.max(1e-30)
}

/// Largest `|got - want|` over the largest `|want|`.
pub fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    assert!(got.iter().all(|g| g.is_finite()), "non-finite GPU output");
    err / scale.max(1e-30)
}

/// Asserts `max_rel(got, want) <= tol`, naming the case.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = max_rel(got, want);
    assert!(
        e <= tol,
        "{what}: max relative error {e:.3e} > {tol:.0e} (got {:?}.., want {:?}..)",
        &got[..got.len().min(4)],
        &want[..want.len().min(4)]
    );
}

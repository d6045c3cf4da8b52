//! Element-wise and row-wise ops with ggml's accumulation widths: sums of squares and
//! softmax denominators in f64, everything else in f32.

use half::f16;
use std::sync::OnceLock;

use crate::{shape_err, ComputeError};

/// `out = x / sqrt(mean(x^2) + eps) * w` per row of `w.len()` (or `x.len()` without weight).
/// The sum of squares is accumulated in f64 from f32 products, like ggml's rms_norm; the
/// weight multiply is a separate f32 step (ggml_mul).
pub fn rms_norm(
    x: &[f32],
    w: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
) -> Result<(), ComputeError> {
    out.copy_from_slice(x);
    rms_norm_in_place(out, w, eps)
}

/// In-place variant of [`rms_norm`]; `x` may hold several rows of `w.len()` elements.
pub fn rms_norm_in_place(x: &mut [f32], w: Option<&[f32]>, eps: f32) -> Result<(), ComputeError> {
    let n = match w {
        Some(w) => w.len(),
        None => x.len(),
    };
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(shape_err(
            "rms_norm input",
            format!("a multiple of {n}"),
            x.len(),
        ));
    }
    // Whole rows per task, about PAR_PIECE elements.
    let piece = (PAR_PIECE / n).max(1) * n;
    par_pieces(x, &[], piece, |x, _| norm_rows(x, n, w, eps));
    Ok(())
}

/// Elementwise or row-wise work below this many elements runs on the calling thread: a
/// parallel region costs about a microsecond, the work ~1 ns per element.
const PAR_MIN: usize = 32 * 1024;

/// Elements per parallel task: a multiple of every vector width, so the same elements take
/// the vector and the scalar-tail paths as in one call.
const PAR_PIECE: usize = 8 * 1024;

/// Runs `f` on consecutive pieces of `x` (`piece` elements, the last shorter) and the same
/// ranges of `y` (empty `y`: empty slices), in parallel once `x` is large. For work where
/// every output element depends only on its own piece, so any split gives the same bits.
fn par_pieces(x: &mut [f32], y: &[f32], piece: usize, f: impl Fn(&mut [f32], &[f32]) + Sync) {
    if x.len() < PAR_MIN || piece >= x.len() {
        return f(x, y);
    }
    struct Base(*mut f32);
    // SAFETY: tasks touch disjoint ranges of the buffer, which outlives the region.
    unsafe impl Sync for Base {}
    impl Base {
        fn at(&self, i: usize) -> *mut f32 {
            self.0.wrapping_add(i)
        }
    }
    let (len, base) = (x.len(), Base(x.as_mut_ptr()));
    crate::pool::run(len.div_ceil(piece), |i| {
        let (a, b) = (i * piece, ((i + 1) * piece).min(len));
        // SAFETY: `a..b` lies inside `x` and belongs to task i alone.
        let xs = unsafe { std::slice::from_raw_parts_mut(base.at(a), b - a) };
        let ys = if y.is_empty() { y } else { &y[a..b] };
        f(xs, ys)
    });
}

fn norm_rows(x: &mut [f32], n: usize, w: Option<&[f32]>, eps: f32) {
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let s = 1.0f32 / (mean + eps).sqrt();
        for v in row.iter_mut() {
            *v *= s;
        }
        if let Some(w) = w {
            for (v, &g) in row.iter_mut().zip(w) {
                *v *= g;
            }
        }
    }
}

/// LayerNorm over rows of `w.len()`: mean and variance accumulated in f64 (ggml_norm), then
/// `* w + b`.
pub fn layer_norm(
    x: &mut [f32],
    w: &[f32],
    b: Option<&[f32]>,
    eps: f32,
) -> Result<(), ComputeError> {
    let n = w.len();
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(shape_err(
            "layer_norm input",
            format!("a multiple of {n}"),
            x.len(),
        ));
    }
    if let Some(b) = b {
        if b.len() != n {
            return Err(shape_err("layer_norm bias", n, b.len()));
        }
    }
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        let mean = (sum / n as f64) as f32;
        let mut var = 0f64;
        for v in row.iter_mut() {
            *v -= mean;
            var += (*v * *v) as f64;
        }
        let var = (var / n as f64) as f32;
        let s = 1.0f32 / (var + eps).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = *v * s * w[i];
            if let Some(b) = b {
                *v += b[i];
            }
        }
    }
    Ok(())
}

/// Softmax in place, ggml style: `exp(x - max)` in f32, denominator summed in f64, then one
/// f32 multiply by its reciprocal.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[inline]
fn silu1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SiLU in place.
pub fn silu(x: &mut [f32]) {
    for v in x {
        *v = silu1(*v);
    }
}

/// `gate = silu(gate) * up` (SwiGLU, the FFN activation of llama/qwen), with the exp of the
/// active SIMD level as ggml's `ggml_vec_swiglu_f32` (whole vectors through its polynomial
/// exp, the rest through libm).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    let level = crate::simd_level();
    par_pieces(gate, up, PAR_PIECE, |g, u| {
        crate::attention::kernels::swiglu(level, g, u)
    })
}

/// SwiGLU with libm's exp throughout (ggml's portable build, and its leftover elements).
pub(crate) fn swiglu_libm(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu1(*g) * u;
    }
}

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Exact tanh-approximation GELU in f32 (the value ggml stores in its table).
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// The table entry as ggml's SIMD builds compute it: GCC contracts `1 + a*x*x` into
/// `fma(x, a*x, 1)` when the target has FMA (seen in the llama.cpp binaries).
fn gelu_fused(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * x.mul_add(GELU_COEF_A * x, 1.0)).tanh())
}

/// ggml's CPU GELU is a lookup indexed by the fp16 bits of the input, holding fp16 results;
/// matching llama.cpp on GELU models requires the same double rounding.
fn gelu_table() -> &'static [f16] {
    static PORTABLE: OnceLock<Vec<f16>> = OnceLock::new();
    static FUSED: OnceLock<Vec<f16>> = OnceLock::new();
    // GCC contracts the table's `1 + a*x*x` wherever the target has FMA: x86 SIMD builds and
    // every aarch64 build (read off `ggml_cpu_init` in ggml's aarch64 build), so on aarch64
    // the NEON levels take the fused table although the other ops run portably there.
    let fused = crate::simd_level() != quant::dispatch::SimdLevel::Scalar || crate::arm_fma();
    let (slot, f): (_, fn(f32) -> f32) = if fused {
        (&FUSED, gelu_fused)
    } else {
        (&PORTABLE, gelu_scalar)
    };
    slot.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(f(f16::from_bits(bits).to_f32())))
            .collect()
    })
}

#[inline]
fn gelu_lookup(table: &[f16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[f16::from_f32(x).to_bits() as usize].to_f32()
    }
}

/// GELU in place, through the fp16 table like ggml.
pub fn gelu(x: &mut [f32]) {
    let t = gelu_table();
    for v in x {
        *v = gelu_lookup(t, *v);
    }
}

/// `gate = gelu(gate) * up` (GeGLU, Gemma's FFN activation), table-based like ggml.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    let t = gelu_table();
    par_pieces(gate, up, PAR_PIECE, |gate, up| {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = if *g >= 10.0 {
                *g * u
            } else {
                gelu_lookup(t, *g) * u
            };
        }
    })
}

/// `x += y`.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds `bias` to every row of `x` (rows of `bias.len()`).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

/// Soft-capping `c * tanh(x / c)` in place, as llama.cpp's graph computes it for final
/// logits (three ops: scale by 1/c, tanh, scale by c).
pub fn softcap(x: &mut [f32], c: f32) {
    let inv = 1.0 / c;
    for v in x {
        *v = (*v * inv).tanh() * c;
    }
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_known_values() {
        // mean(x^2) = (1 + 4 + 9 + 16) / 4 = 7.5
        let x = [1.0f32, -2.0, 3.0, 4.0];
        let w = [1.0f32, 2.0, 0.5, 1.0];
        let mut out = [0f32; 4];
        rms_norm(&x, Some(&w), 0.0, &mut out).unwrap();
        let r = 1.0 / 7.5f32.sqrt();
        let want = [r, -4.0 * r, 1.5 * r, 4.0 * r];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // two rows normalised independently, eps counted
        let mut xs = [3.0f32, 4.0, 0.0, 0.0];
        rms_norm_in_place(&mut xs, Some(&[1.0, 1.0]), 1.0).unwrap();
        let s = 1.0 / (12.5f32 + 1.0).sqrt();
        assert!((xs[0] - 3.0 * s).abs() < 1e-6 && (xs[1] - 4.0 * s).abs() < 1e-6);
        assert_eq!(&xs[2..], &[0.0, 0.0]);
        assert!(rms_norm_in_place(&mut [1.0; 3], Some(&[1.0, 1.0]), 1e-5).is_err());
    }

    #[test]
    fn layer_norm_known_values() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], Some(&[0.5; 4]), 0.0).unwrap();
        // mean 2.5, var 1.25
        let s = 1.0 / 1.25f32.sqrt();
        let want = [-1.5 * s + 0.5, -0.5 * s + 0.5, 0.5 * s + 0.5, 1.5 * s + 0.5];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn softcap_bounds_and_keeps_small_values() {
        let mut x = [0.0f32, 1.0, -1.0, 100.0, -1e6, 29.0];
        softcap(&mut x, 30.0);
        let want = |v: f64| 30.0 * (v / 30.0).tanh();
        for (a, v) in x.iter().zip([0.0, 1.0, -1.0, 100.0, -1e6, 29.0]) {
            assert!((*a as f64 - want(v)).abs() < 1e-5, "{a} vs {}", want(v));
        }
        assert!(x.iter().all(|v| v.abs() <= 30.0));
        assert!(
            (x[1] - 1.0).abs() < 1e-3,
            "near zero the cap is the identity"
        );
    }

    #[test]
    fn softmax_known_values() {
        let mut x = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut x);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0]
            .iter()
            .map(|v| (v - 3.0f64).exp())
            .collect();
        let s: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((x[i] as f64 - e[i] / s).abs() < 1e-7);
        }
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn silu_and_swiglu() {
        let mut x = [0.0f32, 1.0, -2.0];
        silu(&mut x);
        assert_eq!(x[0], 0.0);
        assert!((x[1] - 0.731_058_6).abs() < 1e-6);
        assert!((x[2] + 0.238_405_85).abs() < 1e-6);
        let mut g = [1.0f32, 2.0];
        swiglu(&mut g, &[2.0, -1.0]);
        assert!((g[0] - 2.0 * 0.731_058_6).abs() < 1e-6);
        assert!((g[1] + 1.761_594_2).abs() < 1e-6);
    }

    #[test]
    fn gelu_goes_through_fp16() {
        // gelu(1) = 0.841192; the table stores it as the nearest fp16, 0.84130859375
        let mut x = [1.0f32, -20.0, 12.0, 0.0];
        gelu(&mut x);
        assert_eq!(x[0], 0.841_308_6);
        assert_eq!(x[1], 0.0);
        assert_eq!(x[2], 12.0);
        assert_eq!(x[3], 0.0);
        assert!((gelu_scalar(1.0) - 0.841_192).abs() < 1e-6);
        // input rounded to fp16 first: 1.0001 is fp16 1.0
        let mut y = [1.0001f32];
        gelu(&mut y);
        assert_eq!(y[0], 0.841_308_6);
        let mut g = [1.0f32, 11.0];
        geglu(&mut g, &[2.0, 3.0]);
        assert_eq!(g, [2.0 * 0.841_308_6, 33.0]);
    }
}

//! The vector helpers of ggml's CPU flash attention, one variant per SIMD level, each giving
//! the bits ggml gives when built for that instruction set:
//!
//! * `mad_f16` / `scale_f16`: the f16 V accumulator update. SIMD builds widen to f32, use one
//!   fused multiply-add and round back to f16 (the leftover elements too: GCC contracts the
//!   scalar `y + x*v` into an FMA when the target has one, as the llama.cpp binaries show);
//!   the portable build multiplies then adds.
//! * `gemm_acc`: `C += A * B` of the tiled (prefill) kernel. Every output element is one
//!   sequential chain over the inner dimension, fused under SIMD and unfused in the portable
//!   build, so any blocking over rows and columns gives the same bits.
//! * `softmax_tile`: `exp(x - max)` over a row of scores and their sum. SIMD builds use a
//!   polynomial exp (different for AVX2 and AVX-512) and reduce each vector's lanes in f32
//!   before adding to an f64 sum; the portable build uses libm `expf` and an f64 sum.
//!
//! * `swiglu`: `silu(g) * u` of ggml's `ggml_vec_swiglu_f32`, whose SIMD builds take the
//!   same polynomial exp for whole vectors (it lives here with the softmax that shares it).
//!
//! The scalar functions here are the references: `*_ref` with a `level` emulate a SIMD level
//! lane by lane, and the x86 kernels are tested against them bit for bit.

use half::f16;
use quant::dispatch::SimdLevel;

/// Elements per f32 vector (the softmax reduction width) at each level.
pub(crate) fn f32_lanes(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Scalar => 1,
        // Only SwiGLU takes the aarch64 levels (see `swiglu`).
        SimdLevel::Neon | SimdLevel::Dotprod => 4,
        SimdLevel::Avx2 => 8,
        SimdLevel::Avx512 => 16,
    }
}

/// Whether ggml contracts the one-row flash-attention updates (the f16 accumulator's
/// `y + x * v`, the running sum's `S * ms + vs`) into fused multiply-adds at `level`: at the
/// x86 SIMD levels, and on aarch64 at its NEON levels, where every ggml build has FMA (its
/// f16 vector FMA is `vfmaq_f32` on widened halves and GCC contracts the scalar updates).
pub(crate) fn fma_contracted(level: SimdLevel) -> bool {
    level != SimdLevel::Scalar || crate::arm_fma()
}

/// The f16 dot product of the flash-attention scores (ggml's `ggml_vec_dot_f16`) at `level`.
/// On aarch64, where `level` is the portable one (see `crate::simd_level`), it is the quant
/// crate's F16 kernel at its active level: ggml's NEON dot, in ggml's ARM order.
pub(crate) fn f16_dot(level: SimdLevel) -> quant::VecDotFn {
    #[cfg(target_arch = "aarch64")]
    if level == SimdLevel::Scalar {
        if let Some(f) = quant::dispatch::vec_dot_fn(quant::GgmlType::F16) {
            return f;
        }
    }
    quant::dispatch::kernel(quant::GgmlType::F16, level).expect("every level has an F16 dot")
}

/// `y = f16(y + x * v)`, fused at SIMD levels.
pub(crate) fn mad_f16(level: SimdLevel, y: &mut [f16], x: &[f16], v: f32) {
    assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Scalar {
        return super::x86::mad_f16(level, y, x, v);
    }
    #[cfg(target_arch = "aarch64")]
    if level == SimdLevel::Scalar {
        return super::aarch64::mad_f16(y, x, v, fma_contracted(level));
    }
    mad_f16_ref(level, y, x, v)
}

pub(crate) fn mad_f16_ref(level: SimdLevel, y: &mut [f16], x: &[f16], v: f32) {
    let fused = level != SimdLevel::Scalar;
    for (a, b) in y.iter_mut().zip(x) {
        let r = if fused {
            b.to_f32().mul_add(v, a.to_f32())
        } else {
            a.to_f32() + b.to_f32() * v
        };
        *a = f16::from_f32(r);
    }
}

/// `y = f16(y * v)`: one rounding either way, so every level gives the same bits.
pub(crate) fn scale_f16(level: SimdLevel, y: &mut [f16], v: f32) {
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Scalar {
        return super::x86::scale_f16(level, y, v);
    }
    #[cfg(target_arch = "aarch64")]
    if level == SimdLevel::Scalar {
        return super::aarch64::scale_f16(y, v);
    }
    let _ = level;
    scale_f16_ref(y, v)
}

pub(crate) fn scale_f16_ref(y: &mut [f16], v: f32) {
    for a in y {
        *a = f16::from_f32(a.to_f32() * v);
    }
}

/// `c[i][j] += sum_k a[i][k] * b[k][j]` (row-major `m x n`, `m x k`, `k x n`), each element
/// summed in k order.
pub(crate) fn gemm_acc(
    level: SimdLevel,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Scalar {
        return super::x86::gemm_acc(level, c, a, b, m, k, n);
    }
    gemm_acc_ref(level, c, a, b, m, k, n)
}

pub(crate) fn gemm_acc_ref(
    level: SimdLevel,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    let fused = level != SimdLevel::Scalar;
    for i in 0..m {
        for j in 0..n {
            let mut s = c[i * n + j];
            for kk in 0..k {
                let (x, y) = (a[i * k + kk], b[kk * n + j]);
                s = if fused { x.mul_add(y, s) } else { s + x * y };
            }
            c[i * n + j] = s;
        }
    }
}

/// `y[i] = exp(y[i] - max)` in place; returns the sum of the new values.
pub(crate) fn softmax_tile(level: SimdLevel, y: &mut [f32], max: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Scalar {
        return super::x86::softmax_tile(level, y, max);
    }
    softmax_tile_ref(level, y, max)
}

pub(crate) fn softmax_tile_ref(level: SimdLevel, y: &mut [f32], max: f32) -> f64 {
    let lanes = f32_lanes(level);
    let nv = if lanes == 1 { 0 } else { y.len() / lanes };
    let mut sum = 0f64;
    for v in y[..nv * lanes].chunks_exact_mut(lanes) {
        for e in v.iter_mut() {
            *e = match level {
                SimdLevel::Avx2 | SimdLevel::Neon | SimdLevel::Dotprod => expf_avx2_lane(*e - max),
                _ => expf_avx512_lane(*e - max),
            };
        }
        sum += reduce_lanes(v) as f64;
    }
    for e in &mut y[nv * lanes..] {
        *e = (*e - max).exp();
        sum += *e as f64;
    }
    sum
}

/// The lane reduction ggml's x86 softmax uses: halves added until four lanes are left,
/// then `(l0 + l2) + (l1 + l3)`.
pub(crate) fn reduce_lanes(v: &[f32]) -> f32 {
    let mut t: [f32; 16] = [0.0; 16];
    t[..v.len()].copy_from_slice(v);
    let mut w = v.len();
    while w > 4 {
        w /= 2;
        for i in 0..w {
            t[i] += t[i + w];
        }
    }
    (t[0] + t[2]) + (t[1] + t[3])
}

// The polynomial exp of ggml's SIMD softmax: x = n ln2 + b with n = round(x / ln2), exp(b)
// from a degree-5 polynomial, the power of two applied separately. Coefficients as ggml's.
pub(crate) const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
pub(crate) const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b);
pub(crate) const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
pub(crate) const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
pub(crate) const P4: f32 = f32::from_bits(0x3c07_2010);
pub(crate) const P3: f32 = f32::from_bits(0x3d2b_9f17);
pub(crate) const P2: f32 = f32::from_bits(0x3e2a_af33);
pub(crate) const P1: f32 = f32::from_bits(0x3eff_fedb);
pub(crate) const P0: f32 = f32::from_bits(0x3f7f_fff6);

fn exp_reduce(x: f32) -> (f32, f32, f32) {
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    (z, n, b)
}

/// One lane of ggml's AVX-512 `ggml_v_expf`.
pub(crate) fn expf_avx512_lane(x: f32) -> f32 {
    let (_, n, b) = exp_reduce(x);
    let u = b * b;
    let j = P4
        .mul_add(b, P3)
        .mul_add(u, P2.mul_add(b, P1))
        .mul_add(u, P0.mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // scalef: j * 2^n with a single rounding (exact in f64, then rounded once).
    (j as f64 * 2f64.powi(n as i32)) as f32
}

/// One lane of ggml's AVX2 `ggml_v_expf`.
pub(crate) fn expf_avx2_lane(x: f32) -> f32 {
    let (z, n, b) = exp_reduce(x);
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = P4
        .mul_add(b, P3)
        .mul_add(u, P2.mul_add(b, P1))
        .mul_add(u, P0 * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return k.mul_add(j, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    if n.abs() > 192.0 {
        return s1 * s1;
    }
    let s2 = f32::from_bits(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

/// `g = silu(g) * u` with the level's exp for whole vectors, libm's for the rest.
pub(crate) fn swiglu(level: SimdLevel, g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len());
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Scalar {
        return super::x86::swiglu(level, g, u);
    }
    // ggml's aarch64 build runs whole 4-lane vectors through its NEON `ggml_v_expf`, the same
    // lane arithmetic as the AVX2 one (same constants, same fused steps, per-lane special
    // cases), and the rest through libm.
    if level == SimdLevel::Scalar && crate::arm_fma() {
        return swiglu_ref(quant::dispatch::active_level(), g, u);
    }
    swiglu_ref(level, g, u)
}

pub(crate) fn swiglu_ref(level: SimdLevel, g: &mut [f32], u: &[f32]) {
    let lanes = f32_lanes(level);
    let nv = if lanes == 1 {
        0
    } else {
        g.len() / lanes * lanes
    };
    for (x, &y) in g[..nv].iter_mut().zip(&u[..nv]) {
        let e = match level {
            SimdLevel::Avx2 | SimdLevel::Neon | SimdLevel::Dotprod => expf_avx2_lane(0.0 - *x),
            _ => expf_avx512_lane(0.0 - *x),
        };
        *x = *x / (1.0 + e) * y;
    }
    crate::ops::swiglu_libm(&mut g[nv..], &u[nv..]);
}

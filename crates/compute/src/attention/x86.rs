//! AVX2 / AVX-512 versions of the flash-attention helpers in `kernels.rs`, bit-identical to
//! the lane-by-lane references there (which is what they are tested against).

use std::arch::x86_64::*;

use half::f16;
use quant::dispatch::SimdLevel;

use super::kernels::{LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, SHIFT};

/// The SIMD kernels only run on a CPU that has the level's features. Called once per
/// helper call (per key while decoding), so the detected level is cached in one atomic.
#[inline]
fn check_level(level: SimdLevel) {
    use std::sync::atomic::{AtomicU8, Ordering};
    static MAX: AtomicU8 = AtomicU8::new(u8::MAX);
    let mut max = MAX.load(Ordering::Relaxed);
    if max == u8::MAX {
        max = quant::dispatch::detected_level() as u8;
        MAX.store(max, Ordering::Relaxed);
    }
    assert!(
        level as u8 <= max,
        "SIMD level {} not supported by this CPU",
        level.name()
    );
}

pub(crate) fn mad_f16(level: SimdLevel, y: &mut [f16], x: &[f16], v: f32) {
    check_level(level);
    let n = y.len().min(x.len());
    let np = match level {
        SimdLevel::Avx512 => n / 16 * 16,
        _ => n / 8 * 8,
    };
    // SAFETY: level checked above; both slices hold at least np halves.
    unsafe {
        match level {
            SimdLevel::Avx512 => mad_f16_512(np, y.as_mut_ptr(), x.as_ptr(), v),
            _ => mad_f16_256(np, y.as_mut_ptr(), x.as_ptr(), v),
        }
    }
    if np < n {
        super::kernels::mad_f16_ref(level, &mut y[np..n], &x[np..n], v);
    }
}

/// # Safety
/// AVX-512 F; `y` and `x` valid for `np` halves, `np` a multiple of 16.
#[target_feature(enable = "avx512f,avx2,f16c,fma")]
unsafe fn mad_f16_512(np: usize, y: *mut f16, x: *const f16, v: f32) {
    let vv = _mm512_set1_ps(v);
    for i in (0..np).step_by(16) {
        // SAFETY: i + 16 <= np.
        unsafe {
            let a = _mm512_cvtph_ps(_mm256_loadu_si256(y.add(i) as *const __m256i));
            let b = _mm512_cvtph_ps(_mm256_loadu_si256(x.add(i) as *const __m256i));
            let r = _mm512_fmadd_ps(b, vv, a);
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(r);
            _mm256_storeu_si256(y.add(i) as *mut __m256i, h);
        }
    }
}

/// # Safety
/// AVX2 + F16C + FMA; `y` and `x` valid for `np` halves, `np` a multiple of 8.
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn mad_f16_256(np: usize, y: *mut f16, x: *const f16, v: f32) {
    let vv = _mm256_set1_ps(v);
    for i in (0..np).step_by(8) {
        // SAFETY: i + 8 <= np.
        unsafe {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(y.add(i) as *const __m128i));
            let b = _mm256_cvtph_ps(_mm_loadu_si128(x.add(i) as *const __m128i));
            let r = _mm256_fmadd_ps(b, vv, a);
            let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(r);
            _mm_storeu_si128(y.add(i) as *mut __m128i, h);
        }
    }
}

pub(crate) fn scale_f16(level: SimdLevel, y: &mut [f16], v: f32) {
    check_level(level);
    let n8 = y.len() / 8 * 8;
    // SAFETY: level checked (every level here has AVX2 + F16C); n8 <= y.len().
    unsafe { scale_f16_256(n8, y.as_mut_ptr(), v) };
    super::kernels::scale_f16_ref(&mut y[n8..], v);
}

/// # Safety
/// AVX2 + F16C; `y` valid for `n8` halves, `n8` a multiple of 8.
#[target_feature(enable = "avx2,f16c")]
unsafe fn scale_f16_256(n8: usize, y: *mut f16, v: f32) {
    let vv = _mm256_set1_ps(v);
    for i in (0..n8).step_by(8) {
        // SAFETY: i + 8 <= n8.
        unsafe {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(y.add(i) as *const __m128i));
            let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm256_mul_ps(a, vv));
            _mm_storeu_si128(y.add(i) as *mut __m128i, h);
        }
    }
}

pub(crate) fn gemm_acc(
    level: SimdLevel,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    check_level(level);
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    // SAFETY: level checked; lengths checked above.
    unsafe {
        match level {
            SimdLevel::Avx512 => gemm_512(c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), m, k, n),
            _ => gemm_256(c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), m, k, n),
        }
    }
}

/// Four rows share each B vector load; each lane is its own fused chain over k.
///
/// # Safety
/// AVX-512 F; `c`, `a`, `b` valid for `m*n`, `m*k`, `k*n` floats.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_512(c: *mut f32, a: *const f32, b: *const f32, m: usize, k: usize, n: usize) {
    const R: usize = 4;
    let mut j = 0;
    while j < n {
        let w = (n - j).min(16);
        let mask: __mmask16 = if w == 16 { 0xffff } else { (1u16 << w) - 1 };
        let mut i = 0;
        while i < m {
            let r = (m - i).min(R);
            // SAFETY (whole block): rows i..i+r < m, columns j..j+w <= n, k < k; masked
            // loads/stores touch only the w valid columns.
            unsafe {
                let mut acc = [_mm512_setzero_ps(); R];
                for (t, s) in acc.iter_mut().enumerate().take(r) {
                    *s = _mm512_maskz_loadu_ps(mask, c.add((i + t) * n + j));
                }
                for kk in 0..k {
                    let bv = _mm512_maskz_loadu_ps(mask, b.add(kk * n + j));
                    for (t, s) in acc.iter_mut().enumerate().take(r) {
                        *s = _mm512_fmadd_ps(_mm512_set1_ps(*a.add((i + t) * k + kk)), bv, *s);
                    }
                }
                for (t, s) in acc.iter().enumerate().take(r) {
                    _mm512_mask_storeu_ps(c.add((i + t) * n + j), mask, *s);
                }
            }
            i += r;
        }
        j += w;
    }
}

/// # Safety
/// AVX2 + FMA; `c`, `a`, `b` valid for `m*n`, `m*k`, `k*n` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_256(c: *mut f32, a: *const f32, b: *const f32, m: usize, k: usize, n: usize) {
    const R: usize = 4;
    let n8 = n / 8 * 8;
    let mut j = 0;
    while j < n8 {
        let mut i = 0;
        while i < m {
            let r = (m - i).min(R);
            // SAFETY (whole block): rows i..i+r < m, columns j..j+8 <= n8 <= n.
            unsafe {
                let mut acc = [_mm256_setzero_ps(); R];
                for (t, s) in acc.iter_mut().enumerate().take(r) {
                    *s = _mm256_loadu_ps(c.add((i + t) * n + j));
                }
                for kk in 0..k {
                    let bv = _mm256_loadu_ps(b.add(kk * n + j));
                    for (t, s) in acc.iter_mut().enumerate().take(r) {
                        *s = _mm256_fmadd_ps(_mm256_set1_ps(*a.add((i + t) * k + kk)), bv, *s);
                    }
                }
                for (t, s) in acc.iter().enumerate().take(r) {
                    _mm256_storeu_ps(c.add((i + t) * n + j), *s);
                }
            }
            i += r;
        }
        j += 8;
    }
    for i in 0..m {
        for j in n8..n {
            // SAFETY: i < m, j < n, kk < k: inside the three buffers.
            unsafe {
                let mut s = *c.add(i * n + j);
                for kk in 0..k {
                    s = (*a.add(i * k + kk)).mul_add(*b.add(kk * n + j), s);
                }
                *c.add(i * n + j) = s;
            }
        }
    }
}

pub(crate) fn softmax_tile(level: SimdLevel, y: &mut [f32], max: f32) -> f64 {
    check_level(level);
    assert!(level != SimdLevel::Avx512 || std::arch::is_x86_feature_detected!("avx512dq"));
    let lanes = super::kernels::f32_lanes(level);
    let nv = y.len() / lanes * lanes;
    // SAFETY: level checked; nv <= y.len().
    let mut sum = unsafe {
        match level {
            SimdLevel::Avx512 => softmax_512(y.as_mut_ptr(), nv, max),
            _ => softmax_256(y.as_mut_ptr(), nv, max),
        }
    };
    for e in &mut y[nv..] {
        *e = (*e - max).exp();
        sum += *e as f64;
    }
    sum
}

/// # Safety
/// AVX-512 F/DQ; `y` valid for `nv` floats, `nv` a multiple of 16.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn softmax_512(y: *mut f32, nv: usize, max: f32) -> f64 {
    let mx = _mm512_set1_ps(max);
    let mut sum = 0f64;
    for i in (0..nv).step_by(16) {
        // SAFETY: i + 16 <= nv.
        unsafe {
            let v = expf_512(_mm512_sub_ps(_mm512_loadu_ps(y.add(i)), mx));
            _mm512_storeu_ps(y.add(i), v);
            sum += reduce_512(v) as f64;
        }
    }
    sum
}

/// # Safety
/// AVX2 + FMA; `y` valid for `nv` floats, `nv` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_256(y: *mut f32, nv: usize, max: f32) -> f64 {
    let mx = _mm256_set1_ps(max);
    let mut sum = 0f64;
    for i in (0..nv).step_by(8) {
        // SAFETY: i + 8 <= nv.
        unsafe {
            let v = expf_256(_mm256_sub_ps(_mm256_loadu_ps(y.add(i)), mx));
            _mm256_storeu_ps(y.add(i), v);
            let h = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
            sum += reduce_128(h) as f64;
        }
    }
    sum
}

pub(crate) fn swiglu(level: SimdLevel, g: &mut [f32], u: &[f32]) {
    check_level(level);
    assert!(level != SimdLevel::Avx512 || std::arch::is_x86_feature_detected!("avx512dq"));
    let n = g.len().min(u.len());
    let lanes = super::kernels::f32_lanes(level);
    let nv = n / lanes * lanes;
    // SAFETY: level checked; both slices hold at least nv floats.
    unsafe {
        match level {
            SimdLevel::Avx512 => swiglu_512(g.as_mut_ptr(), u.as_ptr(), nv),
            _ => swiglu_256(g.as_mut_ptr(), u.as_ptr(), nv),
        }
    }
    crate::ops::swiglu_libm(&mut g[nv..n], &u[nv..n]);
}

/// # Safety
/// AVX-512 F/DQ; `g` and `u` valid for `nv` floats, `nv` a multiple of 16.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn swiglu_512(g: *mut f32, u: *const f32, nv: usize) {
    for i in (0..nv).step_by(16) {
        // SAFETY: i + 16 <= nv.
        unsafe {
            let x = _mm512_loadu_ps(g.add(i));
            let e = expf_512(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e));
            _mm512_storeu_ps(g.add(i), _mm512_mul_ps(s, _mm512_loadu_ps(u.add(i))));
        }
    }
}

/// # Safety
/// AVX2 + FMA; `g` and `u` valid for `nv` floats, `nv` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_256(g: *mut f32, u: *const f32, nv: usize) {
    for i in (0..nv).step_by(8) {
        // SAFETY: i + 8 <= nv.
        unsafe {
            let x = _mm256_loadu_ps(g.add(i));
            let e = expf_256(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(g.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(u.add(i))));
        }
    }
}

#[target_feature(enable = "avx2")]
fn reduce_128(h: __m128) -> f32 {
    let t = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
}

#[target_feature(enable = "avx512f,avx2")]
fn reduce_512(x: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(x);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
    let t = _mm256_add_ps(hi, lo);
    reduce_128(_mm_add_ps(
        _mm256_extractf128_ps(t, 1),
        _mm256_castps256_ps128(t),
    ))
}

#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn expf_512(x: __m512) -> __m512 {
    let r = _mm512_set1_ps(SHIFT);
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(LN2_LO),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x),
    );
    let u = _mm512_mul_ps(b, b);
    let p = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(P4), b, _mm512_set1_ps(P3)),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(P2), b, _mm512_set1_ps(P1)),
        ),
        u,
        _mm512_fmadd_ps(_mm512_set1_ps(P0), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(p, n);
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    if big == 0 {
        return res;
    }
    let neg = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
    let alt = _mm512_mask_blend_ps(neg, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
    _mm512_mask_blend_ps(big, res, alt)
}

#[target_feature(enable = "avx2,fma")]
fn expf_256(x: __m256) -> __m256 {
    let r = _mm256_set1_ps(SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(
        e,
        _mm256_castps_si256(_mm256_set1_ps(1.0)),
    ));
    let absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let c = _mm256_cmp_ps::<_CMP_GT_OQ>(absn, _mm256_set1_ps(126.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(P4), b, _mm256_set1_ps(P3)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(P2), b, _mm256_set1_ps(P1)),
        ),
        u,
        _mm256_mul_ps(_mm256_set1_ps(P0), b),
    );
    let normal = _mm256_fmadd_ps(k, j, k);
    if _mm256_movemask_ps(c) == 0 {
        return normal;
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let d = _mm256_cmp_ps::<_CMP_GT_OQ>(absn, _mm256_set1_ps(192.0));
    let big = _mm256_mul_ps(s1, s1);
    let mid = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    _mm256_blendv_ps(_mm256_blendv_ps(normal, mid, c), big, d)
}

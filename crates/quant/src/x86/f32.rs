//! F32 x F32 in the order of ggml's `ggml_vec_dot_f32` with `GGML_SIMD`: four vector
//! accumulators (8 lanes under AVX2, 16 under AVX-512) over steps of 4 vectors, folded
//! pairwise (0+2, 1+3, then 0+1), reduced across lanes, then the tail that does not fill a
//! step added one fused product at a time in f32.

use std::arch::x86_64::*;

use super::reduce_add_512;

/// # Safety
/// The CPU must have AVX2 and FMA; `w` and `x` must hold `n` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(n: usize, w: *const f32, x: *const f32) -> f32 {
    let np = n & !31;
    let mut sum = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, s) in sum.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 <= np <= n.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(w.add(i + 8 * j)),
                    _mm256_loadu_ps(x.add(i + 8 * j)),
                )
            };
            *s = _mm256_fmadd_ps(a, b, *s);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(sum[0], sum[2]), _mm256_add_ps(sum[1], sum[3]));
    // ggml's AVX reduction: halves, then two horizontal adds.
    let t0 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    let mut sumf = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    for k in np..n {
        // SAFETY: k < n.
        sumf = unsafe { (*w.add(k)).mul_add(*x.add(k), sumf) };
    }
    sumf
}

/// # Safety
/// The CPU must have AVX-512 F; `w` and `x` must hold `n` floats.
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn dot_avx512(n: usize, w: *const f32, x: *const f32) -> f32 {
    let np = n & !63;
    let mut sum = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, s) in sum.iter_mut().enumerate() {
            // SAFETY: i + 16j + 16 <= np <= n.
            let (a, b) = unsafe {
                (
                    _mm512_loadu_ps(w.add(i + 16 * j)),
                    _mm512_loadu_ps(x.add(i + 16 * j)),
                )
            };
            *s = _mm512_fmadd_ps(a, b, *s);
        }
        i += 64;
    }
    let s = _mm512_add_ps(_mm512_add_ps(sum[0], sum[2]), _mm512_add_ps(sum[1], sum[3]));
    let mut sumf = reduce_add_512(s);
    for k in np..n {
        // SAFETY: k < n.
        sumf = unsafe { (*w.add(k)).mul_add(*x.add(k), sumf) };
    }
    sumf
}

fn check(n: usize, w: &[u8], x: &[u8]) {
    assert!(
        w.len() >= 4 * n && x.len() >= 4 * n,
        "vec_dot: buffers too short for {n} elements"
    );
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA detection; lengths
    // checked; unaligned loads only.
    unsafe { dot_avx2(n, w.as_ptr() as *const f32, x.as_ptr() as *const f32) }
}

pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; lengths
    // checked; unaligned loads only.
    unsafe { dot_avx512(n, w.as_ptr() as *const f32, x.as_ptr() as *const f32) }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::F32,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: None,
            w4: None,
            tile: None,
            gemv_tile: None,
        },
        avx512: LevelKernels {
            one: Some(vec_dot_avx512),
            x4: None,
            w4: None,
            tile: None,
            gemv_tile: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::F32;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(F32, Exact::Avx512);
    }

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(F32, |v| v.to_le_bytes().to_vec());
    }
}

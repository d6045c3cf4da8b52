//! F16 x F16 in the order of ggml's `ggml_vec_dot_f16` with `GGML_SIMD` (and no AVX-512
//! FP16): halves widened with F16C, four vector accumulators (8 lanes under AVX2, 16 under
//! AVX-512) over steps of 4 vectors, folded pairwise, reduced across lanes in f32, then
//! widened to f64 for the tail's products (each rounded to f32) and rounded back once.

use std::arch::x86_64::*;

use super::reduce_add_512;

pub(super) fn tail(sumf: f64, w: &[u8], x: &[u8], from: usize, n: usize) -> f32 {
    let at = |b: &[u8], i: usize| half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
    (from..n).fold(sumf, |s, i| s + (at(w, i) * at(x, i)) as f64) as f32
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` and `x` must hold `n` halves.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(n: usize, w: *const u8, x: *const u8) -> (f32, usize) {
    let np = n & !31;
    let mut sum = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, s) in sum.iter_mut().enumerate() {
            let off = 2 * (i + 8 * j);
            // SAFETY: i + 8j + 8 <= np <= n halves.
            let (a, b) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(w.add(off) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(x.add(off) as *const __m128i)),
                )
            };
            *s = _mm256_fmadd_ps(a, b, *s);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(sum[0], sum[2]), _mm256_add_ps(sum[1], sum[3]));
    let t0 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    (_mm_cvtss_f32(_mm_hadd_ps(t1, t1)), np)
}

/// # Safety
/// The CPU must have AVX-512 F; `w` and `x` must hold `n` halves.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot_avx512(n: usize, w: *const u8, x: *const u8) -> (f32, usize) {
    let np = n & !63;
    let mut sum = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, s) in sum.iter_mut().enumerate() {
            let off = 2 * (i + 16 * j);
            // SAFETY: i + 16j + 16 <= np <= n halves.
            let (a, b) = unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(w.add(off) as *const __m256i)),
                    _mm512_cvtph_ps(_mm256_loadu_si256(x.add(off) as *const __m256i)),
                )
            };
            *s = _mm512_fmadd_ps(a, b, *s);
        }
        i += 64;
    }
    let s = _mm512_add_ps(_mm512_add_ps(sum[0], sum[2]), _mm512_add_ps(sum[1], sum[3]));
    (reduce_add_512(s), np)
}

fn check(n: usize, w: &[u8], x: &[u8]) {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // lengths checked; unaligned loads only.
    let (s, np) = unsafe { dot_avx2(n, w.as_ptr(), x.as_ptr()) };
    tail(s as f64, w, x, np, n)
}

pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; lengths
    // checked; unaligned loads only.
    let (s, np) = unsafe { dot_avx512(n, w.as_ptr(), x.as_ptr()) };
    tail(s as f64, w, x, np, n)
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::F16,
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
            gemv_tile: Some(Tile {
                rows: super::gemv_f16::ROWS,
                toks: 1,
                f: super::gemv_f16::tile_avx512,
                x_f32: false,
                pack: None,
                prefetches: true,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;
    use crate::GgmlType::F16;

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(F16, Exact::Avx512);
    }

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(F16, |v| half::f16::from_f32(v).to_le_bytes().to_vec());
    }
}

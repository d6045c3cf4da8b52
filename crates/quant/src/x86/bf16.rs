//! BF16 x BF16 in the order of ggml's `ggml_vec_dot_bf16`, whose x86 paths differ per
//! instruction set (so each level has its own result, as ggml's builds do):
//! * AVX-512 BF16: `vdpbf16ps` pair products into two 16-lane accumulators over steps of 64;
//! * AVX-512 F: widened to f32, multiply then add (no FMA) into two 16-lane accumulators over
//!   steps of 32;
//! * AVX2: the same with four 8-lane accumulators, folded (0+2)+(1+3).
//!
//! Each accumulator is reduced in f32, the reductions and the tail's f32 products are summed
//! in f64, and the total rounded to f32 once.

use std::arch::x86_64::*;

use super::{hsum_float_8, reduce_add_512};

fn tail(mut sumf: f64, w: &[u8], x: &[u8], from: usize, n: usize) -> f32 {
    let at = |b: &[u8], i: usize| {
        f32::from_bits((u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32) << 16)
    };
    for i in from..n {
        sumf += (at(w, i) * at(x, i)) as f64;
    }
    sumf as f32
}

/// Eight bf16 at `p` widened to f32.
///
/// # Safety
/// `p` must be readable for 16 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes; unaligned load.
    let h = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
}

/// Sixteen bf16 at `p` widened to f32.
///
/// # Safety
/// `p` must be readable for 32 bytes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16(p: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes; unaligned load.
    let h = unsafe { _mm256_loadu_si256(p as *const __m256i) };
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
}

/// # Safety
/// The CPU must have AVX2; `w` and `x` must hold `n` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(n: usize, w: *const u8, x: *const u8) -> (f64, usize) {
    let mut c = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in c.iter_mut().enumerate() {
            let off = 2 * (i + 8 * j);
            // SAFETY: i + 8j + 8 <= n values.
            let p = unsafe { _mm256_mul_ps(load8(w.add(off)), load8(x.add(off))) };
            *acc = _mm256_add_ps(p, *acc);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
    (hsum_float_8(s) as f64, i)
}

/// # Safety
/// The CPU must have AVX-512 F; `w` and `x` must hold `n` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot_avx512(n: usize, w: *const u8, x: *const u8) -> (f64, usize) {
    let mut c = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in c.iter_mut().enumerate() {
            let off = 2 * (i + 16 * j);
            // SAFETY: i + 16j + 16 <= n values.
            let p = unsafe { _mm512_mul_ps(load16(w.add(off)), load16(x.add(off))) };
            *acc = _mm512_add_ps(p, *acc);
        }
        i += 32;
    }
    (reduce_add_512(c[0]) as f64 + reduce_add_512(c[1]) as f64, i)
}

/// # Safety
/// The CPU must have AVX-512 BF16; `w` and `x` must hold `n` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bf16")]
unsafe fn dot_avx512bf16(n: usize, w: *const u8, x: *const u8) -> (f64, usize) {
    let mut c = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i + 64 <= n {
        for (j, acc) in c.iter_mut().enumerate() {
            let off = 2 * (i + 32 * j);
            // SAFETY: i + 32j + 32 <= n values; __m512i and __m512bh are both 64 plain bytes.
            unsafe {
                let a: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(off) as *const _));
                let b: __m512bh = std::mem::transmute(_mm512_loadu_si512(x.add(off) as *const _));
                *acc = _mm512_dpbf16_ps(*acc, a, b);
            }
        }
        i += 64;
    }
    // Two separate f64 additions, as ggml adds each reduction to its double sum.
    let mut sumf = 0.0f64;
    sumf += reduce_add_512(c[0]) as f64;
    sumf += reduce_add_512(c[1]) as f64;
    (sumf, i)
}

fn check(n: usize, w: &[u8], x: &[u8]) {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
}

pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX2 detection; lengths
    // checked; unaligned loads only.
    let (s, done) = unsafe { dot_avx2(n, w.as_ptr(), x.as_ptr()) };
    tail(s, w, x, done, n)
}

pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; lengths
    // checked; unaligned loads only.
    let (s, done) = unsafe { dot_avx512(n, w.as_ptr(), x.as_ptr()) };
    tail(s, w, x, done, n)
}

pub(crate) fn vec_dot_avx512bf16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check(n, w, x);
    // SAFETY: only reachable through the dispatch table after AVX-512 BF16 detection;
    // lengths checked; unaligned loads only.
    let (s, done) = unsafe { dot_avx512bf16(n, w.as_ptr(), x.as_ptr()) };
    tail(s, w, x, done, n)
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::BF16,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: None,
            w4: None,
            tile: None,
            gemv_tile: None,
        },
        avx512: if super::has_avx512bf16() {
            LevelKernels {
                one: Some(vec_dot_avx512bf16),
                ..LevelKernels::NONE
            }
        } else {
            LevelKernels {
                one: Some(vec_dot_avx512),
                ..LevelKernels::NONE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::simd::*;
    use crate::GgmlType::BF16;

    fn to_bits(v: f32) -> Vec<u8> {
        crate::scalar::f32_to_bf16(v).to_le_bytes().to_vec()
    }

    #[test]
    fn equals_ggml_simd_result() {
        check_fixture(BF16, Exact::Avx512);
    }

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(BF16, to_bits);
    }

    #[test]
    fn avx512f_variant_without_bf16_agrees_with_scalar() {
        // The dispatch table prefers the BF16 instruction where present, so the plain
        // AVX-512 kernel is only reachable here.
        if !crate::x86::has_avx512() {
            return;
        }
        let mut rng = Rng::new(5);
        for n in [1usize, 31, 32, 64, 100, 512] {
            let a: Vec<u8> = (0..n).flat_map(|_| to_bits(rng.normal())).collect();
            let b: Vec<u8> = (0..n).flat_map(|_| to_bits(rng.normal())).collect();
            let want = crate::bf16::vec_dot(n, &a, &b);
            let got = vec_dot_avx512(n, &a, &b);
            assert!(
                (got - want).abs() <= 1e-5 * n as f32,
                "n={n}: {got} vs {want}"
            );
        }
    }
}

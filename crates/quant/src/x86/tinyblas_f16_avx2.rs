//! F16 x F16 in the order of llama.cpp's AVX2 + F16C llamafile sgemm (`tinyBLAS<8, __m256>`),
//! which an x86 build without AVX-512 runs for F16 matmuls of 2 or more tokens over a
//! multiple of 4 rows (see `crate::f16::vec_dot_tinyblas8` for the order). With 16 vector
//! registers tinyBLAS blocks 4 weight rows by at most 3 tokens; the tile shape changes only
//! which products share a register pass, never an output's own sums.

use std::arch::x86_64::*;

use super::hsum_float_8;

/// Weight rows per tile call.
pub(crate) const ROWS: usize = 4;
/// Most tokens per tile call: tinyBLAS's 4 x 3 tile at 16 registers (12 accumulators, 4
/// weight vectors).
pub(crate) const TOKS: usize = 3;

/// 8 f16 values at `p` (only the first `len`, the rest zero) widened.
///
/// # Safety
/// `p` must be readable for `2 * len` bytes, `len <= 8`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_f16(p: *const u8, len: usize) -> __m256 {
    if len >= 8 {
        // SAFETY: 16 bytes readable (caller).
        return unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) };
    }
    let mut buf = [0u16; 8];
    // SAFETY: `2 * len` bytes readable (caller), `buf` holds 16.
    unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr() as *mut u8, 2 * len) };
    // SAFETY: `buf` is 16 bytes.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(buf.as_ptr() as *const __m128i)) }
}

/// 8 f32 at `p` (only the first `len`, the rest zero).
///
/// # Safety
/// `p` must be readable for `4 * len` bytes, `len <= 8`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_f32(p: *const f32, len: usize) -> __m256 {
    if len >= 8 {
        // SAFETY: 32 bytes readable (caller).
        return unsafe { _mm256_loadu_ps(p) };
    }
    let mut buf = [0f32; 8];
    // SAFETY: `len` floats readable (caller), `buf` holds 8.
    unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len) };
    // SAFETY: `buf` is 32 bytes.
    unsafe { _mm256_loadu_ps(buf.as_ptr()) }
}

/// `RW` f16 weight rows against `R` activation rows already widened to f32: one 8-lane
/// accumulator per pair, fused multiply-adds 8 elements at a time (the tail zero-filled as
/// tinyBLAS's partial load), then `hsum`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; each `w` row must hold `n` f16, each `x` row `n` f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm<const RW: usize, const R: usize>(
    n: usize,
    w: [*const u8; RW],
    x: [*const f32; R],
) -> [[f32; R]; RW] {
    let mut acc = [[_mm256_setzero_ps(); R]; RW];
    let mut s = 0;
    while s < n {
        let len = (n - s).min(8);
        // SAFETY: elements s..s + len of every row are in bounds (caller).
        unsafe {
            let mut wv = [_mm256_setzero_ps(); RW];
            for (v, wr) in wv.iter_mut().zip(w) {
                *v = load_f16(wr.add(2 * s), len);
            }
            for (j, xr) in x.iter().enumerate() {
                let xv = load_f32(xr.add(s), len);
                for (acc, wv) in acc.iter_mut().zip(wv) {
                    acc[j] = _mm256_fmadd_ps(wv, xv, acc[j]);
                }
            }
        }
        s += 8;
    }
    let mut out = [[0f32; R]; RW];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum_float_8(a);
        }
    }
    out
}

/// One F16 weight row against one F16 activation row in tinyBLAS's 8-lane order.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
    let xw: Vec<f32> = x[..2 * n]
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection;
    // lengths checked above.
    unsafe { gemm(n, [w.as_ptr()], [xw.as_ptr()])[0][0] }
}

/// Four F16 weight rows times one to three activation rows given as f32 (bytes of `n`
/// little-endian f32 each, 4-byte aligned), in tinyBLAS's 8-lane order.
pub(crate) fn tile_wide_avx2(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
    super::tinyblas_f16::check_wide_tile(n, w, x, out, ROWS, TOKS);
    let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
    let xp = |i: usize| x[i].as_ptr() as *const f32;
    // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C detection; every
    // length, the alignment of the f32 rows and the tile shape checked above.
    unsafe {
        match x.len() {
            1 => super::scatter(gemm(n, wp, [xp(0)]), out),
            2 => super::scatter(gemm(n, wp, [xp(0), xp(1)]), out),
            _ => super::scatter(gemm(n, wp, [xp(0), xp(1), xp(2)]), out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::testkit::simd::{f16_row as row, Rng};

    /// The single-row kernel and every tile width equal the scalar reference bit for bit,
    /// for lengths with and without a partial last vector.
    #[test]
    fn equals_the_scalar_tinyblas8_order() {
        if detected_level() < SimdLevel::Avx2 {
            return;
        }
        let mut rng = Rng::new(18);
        for n in [1usize, 7, 8, 9, 15, 64, 100, 576, 1000] {
            for kind in 0..3 {
                let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row(&mut rng, n, kind)).collect();
                let xs: Vec<Vec<u8>> = (0..TOKS).map(|_| row(&mut rng, n, kind)).collect();
                let wide: Vec<Vec<f32>> = xs
                    .iter()
                    .map(|r| {
                        r.chunks_exact(2)
                            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                            .collect()
                    })
                    .collect();
                let wide_bytes: Vec<&[u8]> = wide
                    .iter()
                    .map(|r| {
                        // SAFETY: f32 has no padding; the byte view covers the same memory.
                        unsafe { std::slice::from_raw_parts(r.as_ptr() as *const u8, 4 * r.len()) }
                    })
                    .collect();
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                for toks in 1..=TOKS {
                    let mut got = vec![0f32; ROWS * toks];
                    tile_wide_avx2(n, &wr, &wide_bytes[..toks], &mut got);
                    for t in 0..toks {
                        for r in 0..ROWS {
                            let want = crate::f16::vec_dot_tinyblas8(n, wr[r], &xs[t]);
                            let one = vec_dot_avx2(n, wr[r], &xs[t]);
                            let g = got[t * ROWS + r];
                            for v in [g, one] {
                                assert!(
                                    v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
                                    "n={n} kind={kind} t={t} r={r}: {v} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

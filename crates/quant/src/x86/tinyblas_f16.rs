//! F16 x F16 in the order of llama.cpp's AVX-512 llamafile sgemm (`tinyBLAS<16, __m512>`),
//! which its x86 build runs instead of `vec_dot` for F16 matmuls of 2 or more tokens over a
//! multiple of 4 rows (see `crate::f16::vec_dot_tinyblas16` for the order). Register-blocked
//! like tinyBLAS: a tile of weight rows and tokens, one 16-lane accumulator per pair.

use std::arch::x86_64::*;

use super::reduce_add_512;

/// Weight rows per tile call.
pub(crate) const ROWS: usize = 4;

/// 16 f16 values at `p` (only the first `len`, the rest zero) widened.
///
/// # Safety
/// `p` must be readable for `2 * len` bytes, `len <= 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn load(p: *const u8, len: usize) -> __m512 {
    let mask: __mmask16 = if len >= 16 { !0 } else { (1u16 << len) - 1 };
    // SAFETY: the masked load touches only the first `len` elements (caller).
    unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16)) }
}

/// # Safety
/// The CPU must have AVX-512 F/BW/VL and F16C; each row must hold `n` f16 values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn gemm<const RW: usize, const R: usize>(
    n: usize,
    w: [*const u8; RW],
    x: [*const u8; R],
) -> [[f32; R]; RW] {
    let mut acc = [[_mm512_setzero_ps(); R]; RW];
    let mut s = 0;
    while s < n {
        let len = (n - s).min(16);
        // SAFETY: elements s..s + len of every row are in bounds (caller).
        unsafe {
            // Plain loops rather than closures: a closure does not inherit the function's
            // target features, so the intrinsics inside it would become calls.
            let mut xv = [_mm512_setzero_ps(); R];
            for (v, xr) in xv.iter_mut().zip(x) {
                *v = load(xr.add(2 * s), len);
            }
            for (acc, wr) in acc.iter_mut().zip(w) {
                let wv = load(wr.add(2 * s), len);
                for (a, xv) in acc.iter_mut().zip(xv) {
                    *a = _mm512_fmadd_ps(wv, xv, *a);
                }
            }
        }
        s += 16;
    }
    let mut out = [[0f32; R]; RW];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = reduce_add_512(a);
        }
    }
    out
}

/// One F16 weight row against one F16 activation row in tinyBLAS's order.
pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; lengths
    // checked above.
    unsafe { gemm(n, [w.as_ptr()], [x.as_ptr()])[0][0] }
}

/// Most tokens per call of [`tile_wide_avx512`]: tinyBLAS's 4 x 6 register tile (24
/// accumulators, 4 weight vectors, 1 activation vector of 32).
pub(crate) const TOKS_WIDE: usize = 6;

/// [`gemm`] with the activations already widened to f32 (`x`: rows of `n` f32, the f16
/// activations converted once per matmul instead of once per weight-row tile): the same
/// products and sums in the same order, with a third fewer conversions per step. Full
/// vectors unmasked, the tail as tinyBLAS's partial load.
///
/// # Safety
/// As for [`gemm`], with each `x` row holding `n` f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn gemm_wide<const R: usize>(
    n: usize,
    w: [*const u8; ROWS],
    x: [*const f32; R],
) -> [[f32; R]; ROWS] {
    let mut acc = [[_mm512_setzero_ps(); R]; ROWS];
    let full = n / 16 * 16;
    let mut s = 0;
    // SAFETY: elements s..s + 16 (s < full) of every row are in bounds (caller).
    unsafe {
        while s < full {
            let mut wv = [_mm512_setzero_ps(); ROWS];
            for (v, wr) in wv.iter_mut().zip(w) {
                *v = _mm512_cvtph_ps(_mm256_loadu_si256(wr.add(2 * s) as *const __m256i));
            }
            for (j, xr) in x.iter().enumerate() {
                let xv = _mm512_loadu_ps(xr.add(s));
                for (acc, wv) in acc.iter_mut().zip(wv) {
                    acc[j] = _mm512_fmadd_ps(wv, xv, acc[j]);
                }
            }
            s += 16;
        }
    }
    if s < n {
        let len = n - s;
        let mask: __mmask16 = (1u16 << len) - 1;
        // SAFETY: the masked loads touch only elements s..n of each row (caller).
        unsafe {
            let mut wv = [_mm512_setzero_ps(); ROWS];
            for (v, wr) in wv.iter_mut().zip(w) {
                *v = load(wr.add(2 * s), len);
            }
            for (j, xr) in x.iter().enumerate() {
                let xv = _mm512_maskz_loadu_ps(mask, xr.add(s));
                for (acc, wv) in acc.iter_mut().zip(wv) {
                    acc[j] = _mm512_fmadd_ps(wv, xv, acc[j]);
                }
            }
        }
    }
    let mut out = [[0f32; R]; ROWS];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = reduce_add_512(a);
        }
    }
    out
}

/// The lengths, shape and alignment a widened-activation tile relies on (`rows` F16 weight
/// rows of `n` values, 1..=`toks` f32 activation rows, 4-byte aligned).
pub(super) fn check_wide_tile(
    n: usize,
    w: &[&[u8]],
    x: &[&[u8]],
    out: &[f32],
    rows: usize,
    toks: usize,
) {
    assert!(
        w.len() == rows && (1..=toks).contains(&x.len()) && out.len() >= rows * x.len(),
        "tile: {} x {} rows for a {rows} x {toks} kernel",
        w.len(),
        x.len()
    );
    assert!(
        w.iter().all(|r| r.len() >= 2 * n)
            && x.iter()
                .all(|r| r.len() >= 4 * n && r.as_ptr().align_offset(4) == 0),
        "vec_dot: buffers too short (or misaligned) for {n} elements"
    );
}

/// Four F16 weight rows times one to six activation rows given as f32 (the f16 activations
/// widened; bytes of `n` little-endian f32 each), in tinyBLAS's order: equal bit for bit to
/// [`vec_dot_avx512`] on the f16 rows.
pub(crate) fn tile_wide_avx512(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
    check_wide_tile(n, w, x, out, ROWS, TOKS_WIDE);
    let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
    let xp = |i: usize| x[i].as_ptr() as *const f32;
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; every
    // length, the alignment of the f32 rows and the tile shape checked above.
    unsafe {
        match x.len() {
            1 => super::scatter(gemm_wide(n, wp, [xp(0)]), out),
            2 => super::scatter(gemm_wide(n, wp, [xp(0), xp(1)]), out),
            3 => super::scatter(gemm_wide(n, wp, [xp(0), xp(1), xp(2)]), out),
            4 => super::scatter(gemm_wide(n, wp, [xp(0), xp(1), xp(2), xp(3)]), out),
            5 => super::scatter(gemm_wide(n, wp, [xp(0), xp(1), xp(2), xp(3), xp(4)]), out),
            _ => super::scatter(
                gemm_wide(n, wp, [xp(0), xp(1), xp(2), xp(3), xp(4), xp(5)]),
                out,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::testkit::simd::{f16_row, Rng};

    /// The single-row kernel equals the scalar reference bit for bit, for lengths with and
    /// without a partial last vector, and values from subnormal to the f16 maximum.
    #[test]
    fn equals_the_scalar_tinyblas_order() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(16);
        for n in [1usize, 15, 16, 17, 64, 100, 576, 1000] {
            for kind in 0..3 {
                let mut row = || f16_row(&mut rng, n, kind);
                let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row()).collect();
                let xs: Vec<Vec<u8>> = (0..2).map(|_| row()).collect();
                for w in &ws {
                    for x in &xs {
                        let want = crate::f16::vec_dot_tinyblas16(n, w, x);
                        let one = vec_dot_avx512(n, w, x);
                        assert!(
                            one.to_bits() == want.to_bits() || (one.is_nan() && want.is_nan()),
                            "n={n} kind={kind}: {one} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The widened-activation tile equals the f16 tile bit for bit, every token count and
    /// lengths with and without a partial last vector.
    #[test]
    fn wide_tile_equals_the_f16_tile() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(17);
        for n in [1usize, 15, 16, 17, 100, 576] {
            let mut row = || -> Vec<u8> {
                (0..n)
                    .flat_map(|_| half::f16::from_f32(rng.normal() * 3.0).to_le_bytes())
                    .collect()
            };
            let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row()).collect();
            let xs: Vec<Vec<u8>> = (0..TOKS_WIDE).map(|_| row()).collect();
            // f32 rows, 4-byte aligned: built as f32 vectors, viewed as bytes.
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
            for toks in 1..=TOKS_WIDE {
                let mut got = vec![0f32; ROWS * toks];
                tile_wide_avx512(n, &wr, &wide_bytes[..toks], &mut got);
                for t in 0..toks {
                    for r in 0..ROWS {
                        let want = crate::f16::vec_dot_tinyblas16(n, wr[r], &xs[t]);
                        assert_eq!(got[t * ROWS + r].to_bits(), want.to_bits(), "n={n} t={t}");
                    }
                }
            }
        }
    }
}

//! F16 x F16 in the order of llama.cpp's AVX-512 llamafile sgemm (`tinyBLAS<16, __m512>`),
//! which its x86 build runs instead of `vec_dot` for F16 matmuls of 2 or more tokens over a
//! multiple of 4 rows (see `crate::f16::vec_dot_tinyblas16` for the order). Register-blocked
//! like tinyBLAS: a tile of weight rows and tokens, one 16-lane accumulator per pair.

use std::arch::x86_64::*;

use super::reduce_add_512;

/// Weight rows and most tokens per tile call.
pub(crate) const ROWS: usize = 4;
pub(crate) const TOKS: usize = 4;

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

/// Four F16 weight rows times one to four F16 activation rows in tinyBLAS's order (see
/// [`crate::dispatch::TileFn`]).
pub(crate) fn tile_avx512(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
    assert!(
        w.len() == ROWS && (1..=TOKS).contains(&x.len()) && out.len() >= ROWS * x.len(),
        "tile: {} x {} rows for a {ROWS} x {TOKS} kernel",
        w.len(),
        x.len()
    );
    assert!(
        w.iter().chain(x).all(|r| r.len() >= 2 * n),
        "vec_dot: buffers too short for {n} elements"
    );
    let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
    let xp = |i: usize| x[i].as_ptr();
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; every
    // length and the tile shape checked above.
    unsafe {
        match x.len() {
            1 => super::scatter(gemm(n, wp, [xp(0)]), out),
            2 => super::scatter(gemm(n, wp, [xp(0), xp(1)]), out),
            3 => super::scatter(gemm(n, wp, [xp(0), xp(1), xp(2)]), out),
            _ => super::scatter(gemm(n, wp, [xp(0), xp(1), xp(2), xp(3)]), out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::x86::testkit::Rng;

    /// Tiles and the single-row kernel equal the scalar reference bit for bit, for lengths
    /// with and without a partial last vector, and values from subnormal to the f16 maximum.
    #[test]
    fn equals_the_scalar_tinyblas_order() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(16);
        for n in [1usize, 15, 16, 17, 64, 100, 576, 1000] {
            for kind in 0..3 {
                let mut row = || -> Vec<u8> {
                    (0..n)
                        .flat_map(|_| {
                            let v = match kind {
                                0 => rng.normal(),
                                1 => rng.normal() * (2f32).powi(rng.below(40) as i32 - 24),
                                _ => [0.0, -0.0, 65504.0, -65504.0, 6e-8][rng.below(5) as usize],
                            };
                            half::f16::from_f32(v).to_le_bytes()
                        })
                        .collect()
                };
                let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row()).collect();
                let xs: Vec<Vec<u8>> = (0..TOKS).map(|_| row()).collect();
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                for toks in 1..=TOKS {
                    let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| r.as_slice()).collect();
                    let mut out = vec![0f32; ROWS * toks];
                    tile_avx512(n, &wr, &xr, &mut out);
                    for t in 0..toks {
                        for r in 0..ROWS {
                            let want = crate::f16::vec_dot_tinyblas16(n, wr[r], xr[t]);
                            let got = out[t * ROWS + r];
                            assert!(
                                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                                "n={n} kind={kind} t={t} r={r}: {got} vs {want}"
                            );
                            let one = vec_dot_avx512(n, wr[r], xr[t]);
                            assert!(
                                one.to_bits() == want.to_bits() || (one.is_nan() && want.is_nan())
                            );
                        }
                    }
                }
            }
        }
    }
}

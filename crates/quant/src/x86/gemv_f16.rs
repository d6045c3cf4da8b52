//! F16 x F16 for one activation row against four weight rows at once (generation), in
//! exactly the order of `f16::dot_avx512` (ggml's `ggml_vec_dot_f16`): per row four 16-lane
//! accumulators over steps of 64 halves, folded pairwise, reduced across lanes, then the
//! tail in f64. Reading four rows side by side gives the memory system four streams per
//! core instead of one (one stream per core leaves bandwidth unused on the benchmark VM,
//! see `models/examples/membw.rs`), the activations are widened once per step for all four
//! rows instead of once per row, and the next four rows are requested a share per step
//! (`NextGroup`). 1B F16 decode, alternated three times in one run: 9.8-9.9 t/s with the
//! one-row kernel and the matmul's group prefetch, 10.8-10.9 with this; adding a look-ahead
//! inside each row into L1 (as the Q8_0 tile has) gave 10.1-10.3.

use std::arch::x86_64::*;

use super::reduce_add_512;

/// Weight rows per call.
pub(crate) const ROWS: usize = 4;

/// # Safety
/// The CPU must have AVX-512 F (and AVX2/FMA/F16C); every weight row and the activation row
/// must hold `np` halves, `np` a multiple of 64.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn gemv(np: usize, w: [*const u8; ROWS], x: *const u8) -> [f32; ROWS] {
    let mut sum = [[_mm512_setzero_ps(); 4]; ROWS];
    let row_bytes = 2 * np;
    let mut ahead = super::NextGroup::new(
        w[0].wrapping_add(ROWS * row_bytes),
        ROWS * row_bytes,
        np / 64,
    );
    let mut i = 0;
    while i < np {
        // SAFETY: i + 64 <= np halves of every row (caller).
        unsafe {
            ahead.step();
            let xv: [__m512; 4] = std::array::from_fn(|j| {
                _mm512_cvtph_ps(_mm256_loadu_si256(x.add(2 * (i + 16 * j)) as *const __m256i))
            });
            for (s, wr) in sum.iter_mut().zip(w) {
                for (j, s) in s.iter_mut().enumerate() {
                    let a = _mm512_cvtph_ps(_mm256_loadu_si256(
                        wr.add(2 * (i + 16 * j)) as *const __m256i
                    ));
                    *s = _mm512_fmadd_ps(a, xv[j], *s);
                }
            }
        }
        i += 64;
    }
    sum.map(|s| {
        let t = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
        reduce_add_512(t)
    })
}

/// Four F16 weight rows times one F16 activation row: `out[r]`, each equal bit for bit to
/// `f16::vec_dot_avx512` on that row.
pub(crate) fn tile_avx512(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
    assert!(
        w.len() == ROWS
            && x.len() == 1
            && out.len() >= ROWS
            && w.iter().all(|r| r.len() >= 2 * n)
            && x[0].len() >= 2 * n,
        "F16 gemv: {} rows x {} tokens of {n} values",
        w.len(),
        x.len()
    );
    let np = n & !63;
    let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
    // SAFETY: only reachable through the dispatch table after AVX-512 detection; every row
    // holds `n >= np` halves (asserted).
    let sums = unsafe { gemv(np, wp, x[0].as_ptr()) };
    for (r, s) in sums.iter().enumerate() {
        out[r] = super::f16::tail(*s as f64, w[r], x[0], np, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::testkit::simd::{f16_row, Rng};

    /// Every row equals the single-row kernel bit for bit, with and without a tail, for
    /// values from subnormal to the f16 maximum.
    #[test]
    fn equals_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(160);
        for n in [1usize, 63, 64, 65, 128, 576, 1000, 2048] {
            for kind in 0..3 {
                let mut row = || f16_row(&mut rng, n, kind);
                let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row()).collect();
                let x = row();
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                let mut out = [0f32; ROWS];
                tile_avx512(n, &wr, &[&x], &mut out);
                for (r, w) in ws.iter().enumerate() {
                    let want = crate::x86::f16::vec_dot_avx512(n, w, &x);
                    assert!(
                        out[r].to_bits() == want.to_bits() || (out[r].is_nan() && want.is_nan()),
                        "n={n} kind={kind} row {r}: {} vs {want}",
                        out[r]
                    );
                }
            }
        }
    }
}

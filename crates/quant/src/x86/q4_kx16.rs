//! Interleaved Q4_K ([`crate::q4_kx16`]) times Q8_K activations on AVX-512 VNNI, in
//! llama.cpp's repacked orders ([`crate::q4_kx16::dot_group`]).
//!
//! A 512-bit load of the group holds four quants of each of the 16 rows (lane = row); the
//! same four activations broadcast to every lane make one `vpdpbusd` per 64 bytes and token,
//! summing each sub-block's products per row exactly. Sub-block scales multiply those sums
//! (exact i32), the mins meet the activations' block sums in one `vpmaddwd`, and the float
//! steps run 16 rows at a time per token with the reference's operations in each lane.

use std::arch::x86_64::*;

use crate::k_common::QK_K;
use crate::q4_kx16::{GROUP_BYTES, G_DMIN, G_QS, G_SCALES, ROWS};
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

/// Most activation rows per call.
pub(crate) const TOKS: usize = 4;

const Y_QS: usize = 4;
const Y_BSUMS: usize = 260;

/// Sub-blocks `2k` and `2k + 1`'s six-bit scales (as i32 lanes, one per row) and their mins
/// (as i16 pairs `[m_2k, m_2k+1]` per 32-bit lane), decoded from the 12 packed-byte vectors
/// `s` (byte `b` of every row in `s[b]`) as `get_scale_min_k4` decodes one row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn scales_mins(s: &[__m128i; 12], k: usize) -> (__m512i, __m512i, __m512i) {
    let low6 = _mm_set1_epi8(0x3f);
    let low4 = _mm_set1_epi8(0x0f);
    // The top two bits of each byte, moved to bits 4..6.
    let top = |v: __m128i| _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(v, 6), _mm_set1_epi8(3)), 4);
    let decode = |j: usize| {
        if j < 4 {
            (_mm_and_si128(s[j], low6), _mm_and_si128(s[j + 4], low6))
        } else {
            let sc = _mm_or_si128(_mm_and_si128(s[j + 4], low4), top(s[j - 4]));
            let m = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(s[j + 4], 4), low4), top(s[j]));
            (sc, m)
        }
    };
    let (sc0, m0) = decode(2 * k);
    let (sc1, m1) = decode(2 * k + 1);
    let mins = _mm512_or_si512(
        _mm512_cvtepu8_epi32(m0),
        _mm512_slli_epi32(_mm512_cvtepu8_epi32(m1), 16),
    );
    (_mm512_cvtepu8_epi32(sc0), _mm512_cvtepu8_epi32(sc1), mins)
}

/// One interleaved group times `T` activation rows; `GEMM` picks the per-chunk float steps
/// (else per super-block). Results go to `out[t * 16 + r]`.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VNNI, FMA and F16C; `g` must hold `nb` super-block columns
/// of a group and each `x[t]` `nb` Q8_K blocks; `out` must hold `16 * T` floats.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
unsafe fn group<const T: usize, const GEMM: bool>(
    nb: usize,
    g: *const u8,
    x: [*const u8; T],
    out: *mut f32,
) {
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_m = [_mm512_setzero_ps(); T];
    // SAFETY (whole body): every read stays inside super-block column / block `i` < `nb`,
    // and the stores inside `out`, per the contract; all accesses are unaligned ones.
    unsafe {
        for i in 0..nb {
            let gb = g.add(i * GROUP_BYTES);
            let yb: [*const u8; T] = x.map(|p| p.add(i * Q8K_BYTES));
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(gb as *const __m256i));
            let dmw = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(G_DMIN) as *const __m256i));
            // d_w * d_y and dmin_w * d_y, rounded as the reference's scalar products.
            let yd: [__m512; T] =
                std::array::from_fn(|t| _mm512_set1_ps((yb[t] as *const f32).read_unaligned()));
            let dd: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dw, yd[t]));
            let dm: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dmw, yd[t]));
            let s: [__m128i; 12] = std::array::from_fn(|b| {
                _mm_loadu_si128(gb.add(G_SCALES + 16 * b) as *const __m128i)
            });
            let mut ci_sum = [_mm512_setzero_si512(); T];
            let mut mi_sum = [_mm512_setzero_si512(); T];
            for k in 0..4 {
                let (sc0, sc1, mins) = scales_mins(&s, k);
                let mut lo = [_mm512_setzero_si512(); T];
                let mut hi = [_mm512_setzero_si512(); T];
                for gi in 0..8 {
                    let w = _mm512_loadu_si512(gb.add(G_QS + 64 * (8 * k + gi)) as *const _);
                    let wl = _mm512_and_si512(w, m4);
                    let wh = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                    for t in 0..T {
                        let y = yb[t].add(Y_QS + 64 * k + 4 * gi);
                        let yl = _mm512_set1_epi32((y as *const i32).read_unaligned());
                        let yh = _mm512_set1_epi32((y.add(32) as *const i32).read_unaligned());
                        lo[t] = _mm512_dpbusd_epi32(lo[t], wl, yl);
                        hi[t] = _mm512_dpbusd_epi32(hi[t], wh, yh);
                    }
                }
                for t in 0..T {
                    let ci = _mm512_add_epi32(
                        _mm512_mullo_epi32(lo[t], sc0),
                        _mm512_mullo_epi32(hi[t], sc1),
                    );
                    // Each sub-block's two 16-value sums, added in i16 as ggml does.
                    let bs = yb[t].add(Y_BSUMS + 8 * k) as *const i16;
                    let p0 = bs.read_unaligned().wrapping_add(bs.add(1).read_unaligned());
                    let p1 = bs
                        .add(2)
                        .read_unaligned()
                        .wrapping_add(bs.add(3).read_unaligned());
                    let pairs = (p0 as u16 as u32 | (p1 as u16 as u32) << 16) as i32;
                    let mi = _mm512_madd_epi16(mins, _mm512_set1_epi32(pairs));
                    if GEMM {
                        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci), dd[t], acc[t]);
                        acc_m[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mi), dm[t], acc_m[t]);
                    } else {
                        ci_sum[t] = _mm512_add_epi32(ci_sum[t], ci);
                        mi_sum[t] = _mm512_add_epi32(mi_sum[t], mi);
                    }
                }
            }
            if !GEMM {
                for t in 0..T {
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci_sum[t]), dd[t], acc[t]);
                    acc_m[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mi_sum[t]), dm[t], acc_m[t]);
                }
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out.add(ROWS * t), _mm512_sub_ps(acc[t], acc_m[t]));
        }
    }
}

/// Checks a call's lengths; returns the super-blocks per row.
fn checked(n: usize, grp: &[u8], x: &[&[u8]], out: &[f32]) -> usize {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K)
            && grp.len() >= nb * GROUP_BYTES
            && (1..=TOKS).contains(&x.len())
            && x.iter().all(|r| r.len() >= nb * Q8K_BYTES)
            && out.len() >= ROWS * x.len(),
        "interleaved Q4_K call: n {n}, group {} bytes, {} rows, out {}",
        grp.len(),
        x.len(),
        out.len()
    );
    nb
}

macro_rules! entry {
    ($name:ident, $gemm:literal, $doc:literal) => {
        #[doc = $doc]
        pub(crate) fn $name(n: usize, grp: &[u8], x: &[&[u8]], out: &mut [f32]) {
            let nb = checked(n, grp, x, out);
            let p = |t: usize| x[t].as_ptr();
            let (g, o) = (grp.as_ptr(), out.as_mut_ptr());
            // SAFETY: handed out by `order::interleaved_q4_k` only at the AVX-512 VNNI
            // level; `checked` verified every length the kernel reads or writes.
            unsafe {
                match x.len() {
                    1 => group::<1, $gemm>(nb, g, [p(0)], o),
                    2 => group::<2, $gemm>(nb, g, [p(0), p(1)], o),
                    3 => group::<3, $gemm>(nb, g, [p(0), p(1), p(2)], o),
                    _ => group::<4, $gemm>(nb, g, [p(0), p(1), p(2), p(3)], o),
                }
            }
        }
    };
}

entry!(
    gemm_entry,
    true,
    "One group times 1..=4 Q8_K rows in the `gemm` order (results `out[t * 16 + r]`)."
);
entry!(
    gemv_entry,
    false,
    "One group times 1..=4 Q8_K rows in the `gemv` order (results `out[t * 16 + r]`)."
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::q4_kx16::{dot_group, interleave};
    use crate::testkit::simd::Rng;

    /// Every token count and both orders equal the scalar reference bit for bit, on random
    /// blocks and on extreme ones (all quants 15, all scales and mins 63, activations at
    /// +-127, the f16 scales at their range ends).
    #[test]
    fn kernel_equals_the_reference() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(21);
        for case in 0..3 {
            for nb in [1, 3, 16] {
                let n = nb * QK_K;
                let mut w = crate::q4_kx16::tests::random_rows(&mut rng, ROWS, nb);
                let mut xs = crate::q4_kx16::tests::q8k_rows(&mut rng, TOKS, n);
                if case == 1 {
                    for b in w.chunks_exact_mut(crate::q4_k::BLOCK_BYTES) {
                        b[4..].fill(0xff);
                        b[0..2].copy_from_slice(&0x7bffu16.to_le_bytes());
                    }
                    for x in &mut xs {
                        for b in x.chunks_exact_mut(Q8K_BYTES) {
                            let v = if rng.next().is_multiple_of(2) {
                                127i8
                            } else {
                                -127
                            };
                            b[Y_QS..Y_BSUMS].fill(v as u8);
                            for j in 0..16 {
                                let s = (16 * v as i16).to_le_bytes();
                                b[Y_BSUMS + 2 * j..Y_BSUMS + 2 * j + 2].copy_from_slice(&s);
                            }
                        }
                    }
                }
                if case == 2 {
                    for b in w.chunks_exact_mut(crate::q4_k::BLOCK_BYTES) {
                        b[0..4].copy_from_slice(&[0x01, 0x00, 0xff, 0xfb]);
                    }
                }
                assert!(interleave(&mut w, ROWS, n));
                for toks in 1..=TOKS {
                    let xr: Vec<&[u8]> = xs[..toks].iter().map(|x| &x[..]).collect();
                    for gemm in [true, false] {
                        let mut want = vec![0f32; ROWS * toks];
                        dot_group(n, &w, &xr, gemm, &mut want);
                        let mut got = vec![0f32; ROWS * toks];
                        let f = if gemm { gemm_entry } else { gemv_entry };
                        f(n, &w, &xr, &mut got);
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "case {case} nb {nb} toks {toks} {gemm}"
                        );
                    }
                }
            }
        }
    }
}

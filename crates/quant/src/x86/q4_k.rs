//! Q4_K x Q8_K on AVX2 (and AVX-512 for the integer part).
//!
//! ggml's AVX2 kernel keeps 8 exact i32 lanes per super-block (lane `m` collects bytes
//! `4m..4m+4` of every 32-byte chunk, each times its sub-block scale), folds them into 8 f32
//! lanes with one FMA per block, and collects the mins in a separate 4-lane f32 accumulator.
//! Integer sums do not depend on how they are formed, so any kernel producing the same lane
//! integers and repeating the float steps gives ggml's result bit for bit; the AVX-512 variant
//! uses that to halve the instruction count.

use std::arch::x86_64::*;

use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q4_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

const W_SCALES: usize = 4;
const W_QS: usize = 16;
pub(super) const Y_QS: usize = 4;
pub(super) const Y_BSUMS: usize = 260;

/// The 12 packed scale/min bytes of a Q4_K/Q5_K block at `p`, as 16 bytes: the 8 six-bit
/// scales, then the 8 six-bit mins.
///
/// # Safety
/// `p` must be readable for 12 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn scales_mins_k4(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes; unaligned reads.
    let (a0, a1, a2) = unsafe {
        let p = p as *const u32;
        (
            p.read_unaligned(),
            p.add(1).read_unaligned(),
            p.add(2).read_unaligned(),
        )
    };
    // Sub-blocks 0..4 keep both values whole in the low 6 bits of bytes 0..8; sub-blocks 4..8
    // have their low nibbles in bytes 8..12 and their top 2 bits above the first 8 bytes.
    let top = |a: u32| ((a >> 6) & 0x0303_0303) << 4;
    let sc_lo = a0 & 0x3f3f_3f3f;
    let sc_hi = (a2 & 0x0f0f_0f0f) | top(a0);
    let mn_lo = a1 & 0x3f3f_3f3f;
    let mn_hi = ((a2 >> 4) & 0x0f0f_0f0f) | top(a1);
    _mm_set_epi32(mn_hi as i32, mn_lo as i32, sc_hi as i32, sc_lo as i32)
}

/// `shuffle_epi8` control broadcasting 16-bit lane `s` of each 128-bit half.
#[inline(always)]
pub(super) fn pick16(s: i32) -> i16 {
    ((2 * s) | ((2 * s + 1) << 8)) as i16
}

/// The mins' f32 contribution of one block, ggml's 4-lane way: bsums added in pairs with a
/// wrapping 16-bit add, times the mins pairwise, as 4 exact i32 lanes.
///
/// # Safety
/// `bsums` must be readable for 32 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn mins_prod(mins16: __m128i, bsums: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment requirement.
    let (lo, hi) = unsafe {
        (
            _mm_loadu_si128(bsums as *const __m128i),
            _mm_loadu_si128(bsums.add(16) as *const __m128i),
        )
    };
    _mm_madd_epi16(mins16, _mm_hadd_epi16(lo, hi))
}

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx2(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx512` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx512(nb, w.as_ptr(), x.as_ptr()) }
}

/// ggml's float steps around the per-block lane integers `lanes(wb, yb, scales)`.
///
/// # Safety
/// `w` and `x` must hold `nb` Q4_K and Q8_K blocks; `lanes` must be safe to call on them.
#[inline(always)]
unsafe fn drive(
    nb: usize,
    w: *const u8,
    x: *const u8,
    lanes: impl Fn(*const u8, *const u8, __m128i) -> __m256i,
) -> f32 {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all reads are unaligned-safe.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = _mm_setzero_ps();
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.add(i * Q8K_BYTES);
            let yd = (yb as *const f32).read_unaligned();
            let d = yd * f16_at(wb);
            let dmin = -yd * f16_at(wb.add(2));
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(wb.add(W_SCALES)));
            let prod = mins_prod(_mm256_extracti128_si256(sm, 1), yb.add(Y_BSUMS));
            acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
            let sumi = lanes(wb, yb, _mm256_castsi256_si128(sm));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
        hsum_float_8(acc) + _mm_cvtss_f32(acc_m)
    }
}

/// # Safety
/// AVX2, FMA and F16C must be available; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2(nb: usize, w: *const u8, x: *const u8) -> f32 {
    let lanes = |wb: *const u8, yb: *const u8, sc: __m128i| {
        // SAFETY: `drive` passes pointers to whole blocks: 128 quant bytes at W_QS and 256
        // activation bytes at Y_QS.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0f);
            let scales = _mm256_set_m128i(sc, sc);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                let y = yb.add(Y_QS + 64 * j);
                let yl = _mm256_loadu_si256(y as *const __m256i);
                let yh = _mm256_loadu_si256(y.add(32) as *const __m256i);
                let sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(pick16(2 * j as i32)));
                let sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(pick16(2 * j as i32 + 1)));
                let pl = _mm256_maddubs_epi16(_mm256_and_si256(q4, m4), yl);
                let ph = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), yh);
                let s = _mm256_add_epi32(_mm256_madd_epi16(sl, pl), _mm256_madd_epi16(sh, ph));
                sumi = _mm256_add_epi32(sumi, s);
            }
            sumi
        }
    };
    // SAFETY: forwarded caller guarantees.
    unsafe { drive(nb, w, x, lanes) }
}

/// Same lane integers as [`dot_avx2`] from 512-bit registers: each pass takes two 64-value
/// chunks, the upper 256 bits holding the second chunk's lanes, and the halves are added
/// (exactly) before the float step.
///
/// # Safety
/// AVX2, FMA, F16C and AVX-512 F/BW/VNNI must be available; `w` and `x` must hold `nb`
/// blocks each.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_avx512(nb: usize, w: *const u8, x: *const u8) -> f32 {
    let lanes = |wb: *const u8, yb: *const u8, sc: __m128i| {
        // SAFETY: `drive` passes pointers to whole blocks: 128 quant bytes at W_QS and 256
        // activation bytes at Y_QS.
        unsafe {
            let m4 = _mm512_set1_epi8(0x0f);
            let scales = _mm512_broadcast_i32x4(sc);
            let mut sumi = _mm512_setzero_si512();
            for j in 0..2 {
                let q4 = _mm512_loadu_si512(wb.add(W_QS + 64 * j) as *const _);
                let a = _mm512_loadu_si512(yb.add(Y_QS + 128 * j) as *const _);
                let b = _mm512_loadu_si512(yb.add(Y_QS + 128 * j + 64) as *const _);
                // Low nibbles: sub-blocks 4j and 4j+2, activations a[0..32] and b[0..32];
                // high nibbles: 4j+1 and 4j+3 with a[32..64] and b[32..64].
                let yl = _mm512_shuffle_i64x2(a, b, 0x44);
                let yh = _mm512_shuffle_i64x2(a, b, 0xee);
                let s = 4 * j as i32;
                let sel = |lo: i32, hi: i32| {
                    let c = _mm512_inserti64x4(
                        _mm512_set1_epi16(pick16(lo)),
                        _mm256_set1_epi16(pick16(hi)),
                        1,
                    );
                    _mm512_shuffle_epi8(scales, c)
                };
                let pl = _mm512_maddubs_epi16(_mm512_and_si512(q4, m4), yl);
                let ph = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q4, 4), m4), yh);
                sumi = _mm512_dpwssd_epi32(sumi, sel(s, s + 2), pl);
                sumi = _mm512_dpwssd_epi32(sumi, sel(s + 1, s + 3), ph);
            }
            _mm256_add_epi32(
                _mm512_castsi512_si256(sumi),
                _mm512_extracti64x4_epi64(sumi, 1),
            )
        }
    };
    // SAFETY: forwarded caller guarantees.
    unsafe { drive(nb, w, x, lanes) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::q8_k::ktest;

    fn levels() -> Vec<(&'static str, ktest::Kernel)> {
        let mut v: Vec<(&'static str, ktest::Kernel)> = Vec::new();
        if ktest::has_avx2() {
            v.push(("avx2", vec_dot_avx2));
        }
        if ktest::has_avx512() {
            v.push(("avx512", vec_dot_avx512));
        }
        v
    }

    #[test]
    fn equals_ggml_x86_kernel_on_fixture() {
        for (name, k) in levels() {
            ktest::check_fixture_bit_exact("Q4_K", name, k);
        }
    }

    #[test]
    fn close_to_scalar_and_levels_agree_bitwise() {
        ktest::check_against_scalar(&ktest::Q4K, crate::q4_k::vec_dot, &levels());
    }
}

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

/// Safe entry: the dot in the order of llama.cpp's repacked `gemm` (tokens in groups of 4).
pub(crate) fn vec_dot_repack_gemm_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_repack_avx2::<GEMM>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: the dot in the order of llama.cpp's repacked `gemv` (the last `n_tokens % 4`).
pub(crate) fn vec_dot_repack_gemv_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_repack_avx2::<GEMV>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Safe entry: the dot in the order of llama.cpp's tiled K-quant matmul, which it uses for
/// batches of 8 or more tokens when the weights are not repacked (see `order::tiled_dot`).
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_repack_avx2::<TILED>(nb, w.as_ptr(), x.as_ptr()) }
}

/// Float orders of [`dot_repack_avx2`].
const GEMV: u8 = 0;
const GEMM: u8 = 1;
const TILED: u8 = 2;

/// llama.cpp's x86 build does not use `vec_dot` for Q4_K matmuls: it repacks the weights of
/// any matrix with a multiple of 8 rows into 8-row interleaved blocks (`q4_K_8x8_q8_K`) and
/// runs `ggml_gemm_q4_K_8x8_q8_K` on tokens in groups of 4 and `ggml_gemv_q4_K_8x8_q8_K` on
/// the rest. Per output element both keep two plain f32 accumulators (scales and mins) fed
/// with FMAs of exact integers times `d_w * d_y` / `dmin_w * d_y`, and return their
/// difference; `gemm` adds one term per 64 values, `gemv` one per super-block. `TILED` is
/// the tiled matmul's order instead: per block `r = S * d_w - dmin_w * M` (a multiply, then
/// a fused negative multiply-add), then one FMA `acc += r * d_y` (GCC fuses that one).
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` and `x` must hold `nb` blocks each.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_repack_avx2<const MODE: u8>(nb: usize, w: *const u8, x: *const u8) -> f32 {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = 0f32;
        let mut acc_m = 0f32;
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.add(i * Q8K_BYTES);
            let yd = (yb as *const f32).read_unaligned();
            let dd = f16_at(wb) * yd;
            let dm = f16_at(wb.add(2)) * yd;
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(wb.add(W_SCALES)));
            // Lane k: the mins of sub-blocks 2k, 2k+1 times their bsums, i.e. chunk k's part.
            let mins = mins_prod(_mm256_extracti128_si256(sm, 1), yb.add(Y_BSUMS));
            let sc = _mm256_castsi256_si128(sm);
            let scales = _mm256_set_m128i(sc, sc);
            let mut v = [_mm256_setzero_si256(); 4];
            for (j, v) in v.iter_mut().enumerate() {
                let q4 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                let y = yb.add(Y_QS + 64 * j);
                let yl = _mm256_loadu_si256(y as *const __m256i);
                let yh = _mm256_loadu_si256(y.add(32) as *const __m256i);
                let sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(pick16(2 * j as i32)));
                let sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(pick16(2 * j as i32 + 1)));
                let pl = _mm256_maddubs_epi16(_mm256_and_si256(q4, m4), yl);
                let ph = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), yh);
                *v = _mm256_add_epi32(_mm256_madd_epi16(sl, pl), _mm256_madd_epi16(sh, ph));
            }
            // Horizontal sums of the four chunk vectors, lane k = chunk k.
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            let chunks = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            let ci: [i32; 4] = std::mem::transmute(chunks);
            let mi: [i32; 4] = std::mem::transmute(mins);
            let sum = |a: [i32; 4]| a.iter().fold(0i32, |s, &v| s.wrapping_add(v));
            match MODE {
                GEMM => {
                    for k in 0..4 {
                        acc = (ci[k] as f32).mul_add(dd, acc);
                        acc_m = (mi[k] as f32).mul_add(dm, acc_m);
                    }
                }
                GEMV => {
                    acc = (sum(ci) as f32).mul_add(dd, acc);
                    acc_m = (sum(mi) as f32).mul_add(dm, acc_m);
                }
                _ => {
                    let dw = f16_at(wb);
                    let r = (-f16_at(wb.add(2))).mul_add(sum(mi) as f32, sum(ci) as f32 * dw);
                    acc = r.mul_add(yd, acc);
                }
            }
        }
        acc - acc_m
    }
}

/// Safe entry: [`vec_dot_repack_gemm_avx2`] for four activation rows at once (the 4 tokens of
/// one `gemm` group), each result bit-identical to the single-row kernel's.
pub(crate) fn vec_dot_repack_gemm_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks_x4` checked all five buffers.
    unsafe { dot_repack_gemm_x4_avx2(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// Rows of a 4 x 4 i32 matrix become columns.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose4(r: [__m128i; 4]) -> [__m128i; 4] {
    let a = _mm_unpacklo_epi32(r[0], r[1]);
    let b = _mm_unpacklo_epi32(r[2], r[3]);
    let c = _mm_unpackhi_epi32(r[0], r[1]);
    let d = _mm_unpackhi_epi32(r[2], r[3]);
    [
        _mm_unpacklo_epi64(a, b),
        _mm_unpackhi_epi64(a, b),
        _mm_unpacklo_epi64(c, d),
        _mm_unpackhi_epi64(c, d),
    ]
}

/// The weight block is unpacked once for four tokens, and the per-token float chains become
/// the four lanes of one vector: lane `t` sees exactly the operations of the one-row kernel.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` and each `x[t]` must hold `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_repack_gemm_x4_avx2(nb: usize, w: *const u8, x: [*const u8; 4]) -> [f32; 4] {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = _mm_setzero_ps();
        let mut acc_m = _mm_setzero_ps();
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.map(|p| p.add(i * Q8K_BYTES));
            let yd = _mm_setr_ps(
                (yb[0] as *const f32).read_unaligned(),
                (yb[1] as *const f32).read_unaligned(),
                (yb[2] as *const f32).read_unaligned(),
                (yb[3] as *const f32).read_unaligned(),
            );
            let dd = _mm_mul_ps(_mm_set1_ps(f16_at(wb)), yd);
            let dm = _mm_mul_ps(_mm_set1_ps(f16_at(wb.add(2))), yd);
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(wb.add(W_SCALES)));
            let mins16 = _mm256_extracti128_si256(sm, 1);
            let sc = _mm256_castsi256_si128(sm);
            let scales = _mm256_set_m128i(sc, sc);
            let mut q = [_mm256_setzero_si256(); 8];
            let mut s = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(wb.add(W_QS + 32 * j) as *const __m256i);
                q[2 * j] = _mm256_and_si256(q4, m4);
                q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                for h in 0..2 {
                    let ctl = _mm256_set1_epi16(pick16((2 * j + h) as i32));
                    s[2 * j + h] = _mm256_shuffle_epi8(scales, ctl);
                }
            }
            let mut chunks = [_mm_setzero_si128(); 4];
            let mut mins = [_mm_setzero_si128(); 4];
            for t in 0..4 {
                let mut v = [_mm256_setzero_si256(); 4];
                for (j, v) in v.iter_mut().enumerate() {
                    let y = yb[t].add(Y_QS + 64 * j);
                    let yl = _mm256_loadu_si256(y as *const __m256i);
                    let yh = _mm256_loadu_si256(y.add(32) as *const __m256i);
                    let pl = _mm256_madd_epi16(s[2 * j], _mm256_maddubs_epi16(q[2 * j], yl));
                    let ph =
                        _mm256_madd_epi16(s[2 * j + 1], _mm256_maddubs_epi16(q[2 * j + 1], yh));
                    *v = _mm256_add_epi32(pl, ph);
                }
                let h =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
                chunks[t] =
                    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                mins[t] = mins_prod(mins16, yb[t].add(Y_BSUMS));
            }
            let (chunks, mins) = (transpose4(chunks), transpose4(mins));
            for k in 0..4 {
                acc = _mm_fmadd_ps(_mm_cvtepi32_ps(chunks[k]), dd, acc);
                acc_m = _mm_fmadd_ps(_mm_cvtepi32_ps(mins[k]), dm, acc_m);
            }
        }
        std::mem::transmute::<__m128, [f32; 4]>(_mm_sub_ps(acc, acc_m))
    }
}

/// Safe entry: [`vec_dot_repack_gemm_x4_avx2`] with the integer part on AVX-512.
pub(crate) fn vec_dot_repack_gemm_x4_avx512(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx512` held; `blocks_x4` checked all five buffers.
    unsafe { dot_repack_gemm_x4_avx512(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// The chunk integers of [`dot_repack_gemm_x4_avx2`] from 512-bit registers laid out as in
/// [`dot_avx512`] (the upper half holds the next 64-value chunk); float steps unchanged.
///
/// # Safety
/// AVX2, FMA, F16C and AVX-512 F/BW/VNNI must be available; `w` and each `x[t]` must hold
/// `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
unsafe fn dot_repack_gemm_x4_avx512(nb: usize, w: *const u8, x: [*const u8; 4]) -> [f32; 4] {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = _mm_setzero_ps();
        let mut acc_m = _mm_setzero_ps();
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let yb = x.map(|p| p.add(i * Q8K_BYTES));
            let yd = _mm_setr_ps(
                (yb[0] as *const f32).read_unaligned(),
                (yb[1] as *const f32).read_unaligned(),
                (yb[2] as *const f32).read_unaligned(),
                (yb[3] as *const f32).read_unaligned(),
            );
            let dd = _mm_mul_ps(_mm_set1_ps(f16_at(wb)), yd);
            let dm = _mm_mul_ps(_mm_set1_ps(f16_at(wb.add(2))), yd);
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(wb.add(W_SCALES)));
            let mins16 = _mm256_extracti128_si256(sm, 1);
            let scales = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
            let sel = |lo: i32, hi: i32| {
                let c = _mm512_inserti64x4(
                    _mm512_set1_epi16(pick16(lo)),
                    _mm256_set1_epi16(pick16(hi)),
                    1,
                );
                _mm512_shuffle_epi8(scales, c)
            };
            let mut q = [_mm512_setzero_si512(); 4];
            let mut sc = [_mm512_setzero_si512(); 4];
            for j in 0..2 {
                let q4 = _mm512_loadu_si512(wb.add(W_QS + 64 * j) as *const _);
                q[2 * j] = _mm512_and_si512(q4, m4);
                q[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(q4, 4), m4);
                let s = 4 * j as i32;
                sc[2 * j] = sel(s, s + 2);
                sc[2 * j + 1] = sel(s + 1, s + 3);
            }
            let mut chunks = [_mm_setzero_si128(); 4];
            let mut mins = [_mm_setzero_si128(); 4];
            for t in 0..4 {
                let mut v = [_mm256_setzero_si256(); 4];
                for j in 0..2 {
                    let a = _mm512_loadu_si512(yb[t].add(Y_QS + 128 * j) as *const _);
                    let b = _mm512_loadu_si512(yb[t].add(Y_QS + 128 * j + 64) as *const _);
                    let pl = _mm512_maddubs_epi16(q[2 * j], _mm512_shuffle_i64x2(a, b, 0x44));
                    let ph = _mm512_maddubs_epi16(q[2 * j + 1], _mm512_shuffle_i64x2(a, b, 0xee));
                    let s =
                        _mm512_dpwssd_epi32(_mm512_madd_epi16(sc[2 * j], pl), sc[2 * j + 1], ph);
                    v[2 * j] = _mm512_castsi512_si256(s);
                    v[2 * j + 1] = _mm512_extracti64x4_epi64(s, 1);
                }
                let h =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
                chunks[t] =
                    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                mins[t] = mins_prod(mins16, yb[t].add(Y_BSUMS));
            }
            let (chunks, mins) = (transpose4(chunks), transpose4(mins));
            for k in 0..4 {
                acc = _mm_fmadd_ps(_mm_cvtepi32_ps(chunks[k]), dd, acc);
                acc_m = _mm_fmadd_ps(_mm_cvtepi32_ps(mins[k]), dm, acc_m);
            }
        }
        std::mem::transmute::<__m128, [f32; 4]>(_mm_sub_ps(acc, acc_m))
    }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q4_K,
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
    use super::*;
    use crate::testkit::kquant as ktest;

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

    /// The repacked order spelled out on decoded values: exact integers per 64-value chunk.
    fn repack_reference(per_64: bool, n: usize, w: &[u8], x: &[u8]) -> f32 {
        let (mut acc, mut acc_m) = (0f32, 0f32);
        for (wb, yb) in w
            .chunks_exact(BLOCK_BYTES)
            .zip(x.chunks_exact(Q8K_BYTES))
            .take(n / QK_K)
        {
            let (sc, mn) = crate::k_common::unpack_scales_mins_k4(&wb[4..16]);
            let yd = crate::q8_k::block_d(yb);
            let dd = crate::scalar::le_f16(wb, 0) * yd;
            let dm = crate::scalar::le_f16(wb, 2) * yd;
            let q8 = crate::q8_k::block_qs(yb);
            let (mut ib, mut mb) = (0i32, 0i32);
            for c in 0..4 {
                let mut ic = 0i32;
                let mut mc = 0i32;
                for half in 0..2 {
                    let sub = 2 * c + half;
                    let dot: i32 = (0..32)
                        .map(|k| {
                            let q = (wb[W_QS + 32 * c + k] >> (4 * half)) & 0xf;
                            q as i32 * q8[32 * sub + k] as i8 as i32
                        })
                        .sum();
                    ic += sc[sub] as i32 * dot;
                    let bs = crate::q8_k::block_bsum(yb, 2 * sub)
                        .wrapping_add(crate::q8_k::block_bsum(yb, 2 * sub + 1));
                    mc += mn[sub] as i32 * bs as i32;
                }
                if per_64 {
                    acc = (ic as f32).mul_add(dd, acc);
                    acc_m = (mc as f32).mul_add(dm, acc_m);
                }
                ib += ic;
                mb += mc;
            }
            if !per_64 {
                acc = (ib as f32).mul_add(dd, acc);
                acc_m = (mb as f32).mul_add(dm, acc_m);
            }
        }
        acc - acc_m
    }

    #[test]
    fn repack_orders_equal_their_reference_and_are_close_to_scalar() {
        if !ktest::has_avx2() {
            return;
        }
        let gemm: ktest::Kernel = |n, w, x| repack_reference(true, n, w, x);
        let gemv: ktest::Kernel = |n, w, x| repack_reference(false, n, w, x);
        // Bit-exact with the spelled-out order, and within rounding of the vec_dot order.
        ktest::check_against_scalar(
            &ktest::Q4K,
            crate::q4_k::vec_dot,
            &[("gemm ref", gemm), ("gemm avx2", vec_dot_repack_gemm_avx2)],
        );
        ktest::check_against_scalar(
            &ktest::Q4K,
            crate::q4_k::vec_dot,
            &[("gemv ref", gemv), ("gemv avx2", vec_dot_repack_gemv_avx2)],
        );
    }

    /// xorshift64 values in [-1, 1) that C computes to the same floats.
    fn ggml_side_values(state: &mut u64, count: usize, scale: f32) -> Vec<f32> {
        (0..count)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                ((*state >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// Output bits of llama.cpp b11434's `ggml_mul_mat` on this machine's kind of CPU with
    /// the weights in the CPU repack buffer (log: "repack tensor with q4_K_8x8"), 1 thread:
    /// an 8 x 1024 Q4_K matrix (quantized by ggml from the values below) times 6 F32 tokens;
    /// tokens 0..4 went through `gemm`, 4 and 5 through `gemv`. Row `t` = token `t`.
    const GGML_REPACK_Q4K: [[u32; 8]; 6] = [
        [
            0xbf6f7ed0, 0xc206ec37, 0xc2cb49d9, 0xc0e0ac6b, 0x41083ae8, 0x4105feba, 0x414c734a,
            0xc0fcc160,
        ],
        [
            0xc0e4bfc0, 0x428c349a, 0x417fbe60, 0x40c8abd8, 0xc0aa3ce0, 0xc2ccef00, 0x41f7caf0,
            0x420c2a8b,
        ],
        [
            0xc061d0d8, 0x41118740, 0x41fa4c90, 0xbfa25118, 0xc0f23c28, 0xc202e8ab, 0xc16c94c5,
            0x41a572aa,
        ],
        [
            0xc00c36b0, 0xc2370a73, 0xc28171e2, 0xc18aad8d, 0xc192a334, 0xc28c29a8, 0x41d55149,
            0x4282c663,
        ],
        [
            0x413834f7, 0x4091bf9a, 0x41d36708, 0xc01116fc, 0xc19edb32, 0xc2478a4e, 0xc188640d,
            0xc22b7390,
        ],
        [
            0x4118b2ec, 0xc25ab414, 0xc0340a90, 0xc1d0ef7c, 0x421f3d90, 0x431de4c4, 0xbf041d68,
            0xc24d688d,
        ],
    ];

    #[test]
    fn repack_gemm_x4_equals_one_row_kernel_bitwise() {
        if !ktest::has_avx2() {
            return;
        }
        let mut rng = ktest::Rng::new(99);
        for nb in [1usize, 2, 5, 27] {
            let mut w = vec![0u8; nb * BLOCK_BYTES];
            rng.bytes(&mut w);
            for b in w.chunks_exact_mut(BLOCK_BYTES) {
                b[1] = (b[1] & 0x83) | 0x30; // finite f16 d and dmin of moderate size
                b[3] = (b[3] & 0x83) | 0x28;
            }
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|t| {
                    let v: Vec<f32> = (0..nb * QK_K)
                        .map(|_| rng.unit() * (t + 1) as f32)
                        .collect();
                    let mut q = vec![0u8; nb * Q8K_BYTES];
                    crate::q8_k::quantize(&v, &mut q);
                    q
                })
                .collect();
            let n = nb * QK_K;
            let mut x4: Vec<ktest::KernelX4> = vec![vec_dot_repack_gemm_x4_avx2];
            if ktest::has_avx512() {
                x4.push(vec_dot_repack_gemm_x4_avx512);
            }
            for f in x4 {
                let got = f(n, &w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (t, g) in got.iter().enumerate() {
                    let want = vec_dot_repack_gemm_avx2(n, &w, &xs[t]);
                    assert_eq!(g.to_bits(), want.to_bits(), "nb {nb} token {t}");
                }
            }
        }
    }

    /// FNV-1a over the little-endian bits of `y[token][row]`, as the generator hashed them.
    fn fnv(y: &[Vec<f32>]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in y.iter().flatten().flat_map(|v| v.to_bits().to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// Larger matrices reach ggml's AVX-512 `gemm` branch (16 columns and 16 tokens at a
    /// time) and its AVX2 remainder loops; the generator printed only a hash of all outputs
    /// (same inputs as above with these sizes, 1 and 2 threads alike). `plain` is the same
    /// matmul with the weights in an ordinary CPU buffer, which ggml computes with its tiled
    /// K-quant matmul for 8 or more tokens (and with `vec_dot` for fewer).
    #[test]
    fn repack_orders_equal_llama_cpp_on_larger_matrices() {
        if !ktest::has_avx2() {
            return;
        }
        for (k, m, n, want, plain) in [
            (
                512,
                32,
                22,
                0xa6f1_9000_a9d6_2cd7u64,
                0xcaa7_ea1c_6498_d4b8u64,
            ),
            (768, 48, 37, 0xacad_fda2_d266_24fc, 0xc07a_f409_1b56_e98b),
        ] {
            let nb = k / QK_K;
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let mut w = vec![0u8; m * nb * BLOCK_BYTES];
            for (r, row) in w.chunks_exact_mut(nb * BLOCK_BYTES).enumerate() {
                let v = ggml_side_values(&mut state, k, (1 << (r % 3)) as f32);
                crate::q4_k::quantize(&v, row);
            }
            let xq: Vec<Vec<u8>> = (0..n)
                .map(|t| {
                    let v = ggml_side_values(&mut state, k, (1 << (t % 2)) as f32);
                    let mut xq = vec![0u8; nb * Q8K_BYTES];
                    crate::q8_k::quantize(&v, &mut xq);
                    xq
                })
                .collect();
            let matmul = |f: &dyn Fn(usize) -> ktest::Kernel| -> Vec<Vec<f32>> {
                xq.iter()
                    .enumerate()
                    .map(|(t, x)| {
                        w.chunks_exact(nb * BLOCK_BYTES)
                            .map(|row| f(t)(k, row, x))
                            .collect()
                    })
                    .collect()
            };
            let repacked = matmul(&|t| {
                if t < n - n % 4 {
                    vec_dot_repack_gemm_avx2
                } else {
                    vec_dot_repack_gemv_avx2
                }
            });
            assert_eq!(fnv(&repacked), want, "{k} x {m} times {n} tokens");
            // 22 and 37 tokens are at least 8, so the plain matmul took the tiled path.
            ktest::check_against_scalar(
                &ktest::Q4K,
                crate::q4_k::vec_dot,
                &[("tiled", vec_dot_tiled_avx2)],
            );
            let tiled = matmul(&|_| vec_dot_tiled_avx2);
            assert_eq!(fnv(&tiled), plain, "tiled {k} x {m}");
        }
    }

    #[test]
    fn dispatch_offers_repacked_order_where_ggml_repacks() {
        use crate::dispatch::{active_level, SimdLevel};
        use crate::order::repacked_dot;
        use crate::GgmlType::{Q4_K, Q6_K};
        let on = active_level() >= SimdLevel::Avx2;
        assert_eq!(repacked_dot(Q4_K, 16).is_some(), on);
        assert!(repacked_dot(Q4_K, 12).is_none());
        assert!(repacked_dot(Q6_K, 16).is_none());
    }

    #[test]
    fn repack_orders_equal_llama_cpp_repacked_matmul() {
        if !ktest::has_avx2() {
            return;
        }
        let (k, m) = (1024, 8);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut w = vec![0u8; m * 4 * BLOCK_BYTES];
        for r in 0..m {
            let v = ggml_side_values(&mut state, k, (1 << (r % 3)) as f32);
            crate::q4_k::quantize(&v, &mut w[r * 4 * BLOCK_BYTES..(r + 1) * 4 * BLOCK_BYTES]);
        }
        for (t, want) in GGML_REPACK_Q4K.iter().enumerate() {
            let v = ggml_side_values(&mut state, k, (1 << (t % 2)) as f32);
            let mut xq = vec![0u8; 4 * Q8K_BYTES];
            crate::q8_k::quantize(&v, &mut xq);
            let f = if t < 4 {
                vec_dot_repack_gemm_avx2
            } else {
                vec_dot_repack_gemv_avx2
            };
            for (r, &want) in want.iter().enumerate() {
                let got = f(k, &w[r * 4 * BLOCK_BYTES..(r + 1) * 4 * BLOCK_BYTES], &xq);
                assert_eq!(got.to_bits(), want, "token {t} row {r}: {got:e}");
            }
        }
    }
}

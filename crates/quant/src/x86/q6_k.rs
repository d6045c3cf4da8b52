//! Q6_K x Q8_K on AVX2 (and AVX-512 for the integer part).
//!
//! ggml's AVX2 kernel multiplies the unsigned 6-bit quants (0..64, without the -32 offset)
//! with the activations, then takes the offset back out of all 8 i32 lanes at once as
//! `32 * scale * bsum` for pairs of 16-groups, so its lane integers are not the natural
//! per-lane sums; they are reproduced exactly here (and from 512-bit registers in the AVX-512
//! variant), then folded into 8 f32 lanes with one FMA per block as ggml does.

use std::arch::x86_64::*;

use super::q4_k::{Y_BSUMS, Y_QS};
use super::{blocks, f16_at, hsum_float_8};
use crate::k_common::QK_K;
use crate::q6_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

pub(super) const W_QH: usize = 128;
pub(super) const W_SCALES: usize = 192;
pub(super) const W_D: usize = 208;

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx2::<1, false>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// Safe entry for the dispatch table: one weight row against four activation rows, each
/// result bit-identical to [`vec_dot_avx2`]'s.
pub(crate) fn vec_dot_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx2` held, and `blocks_x4`
    // checked that all five buffers hold `nb` blocks.
    unsafe { dot_avx2::<4, false>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// Safe entry for the dispatch table.
pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx512` held, and `blocks`
    // checked that both buffers hold `nb` blocks.
    unsafe { dot_avx512::<1, false>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// Safe entry: the dot in the order of llama.cpp's tiled K-quant matmul, which ggml uses for
/// Q6_K (never repacked on x86) whenever a batch has 8 or more tokens: per block the exact
/// integer total `S` becomes `r = S * d_w`, then `acc += r * d_y` in one FMA.
pub(crate) fn vec_dot_tiled_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks` checked both buffers.
    unsafe { dot_avx2::<1, true>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// [`vec_dot_tiled_avx2`] for four activation rows, bit-identical per row.
pub(crate) fn vec_dot_tiled_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx2` held; `blocks_x4` checked all five buffers.
    unsafe { dot_avx2::<4, true>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// [`vec_dot_tiled_avx2`] with the integer part on AVX-512 (same integers, same result).
pub(crate) fn vec_dot_tiled_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = blocks(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx512` held; `blocks` checked both buffers.
    unsafe { dot_avx512::<1, true>(nb, w.as_ptr(), [x.as_ptr()])[0] }
}

/// [`vec_dot_tiled_avx512`] for four activation rows, bit-identical per row.
pub(crate) fn vec_dot_tiled_x4_avx512(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: handed out only once `has_avx512` held; `blocks_x4` checked all five buffers.
    unsafe { dot_avx512::<4, true>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// Safe entry for the dispatch table: [`vec_dot_avx512`] for four activation rows.
pub(crate) fn vec_dot_x4_avx512(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    let nb = super::blocks_x4(n, QK_K, w, BLOCK_BYTES, x, Q8K_BYTES);
    // SAFETY: the dispatch table hands this out only once `has_avx512` held, and `blocks_x4`
    // checked that all five buffers hold `nb` blocks.
    unsafe { dot_avx512::<4, false>(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
}

/// Sum of the 8 lanes; exact (wrapping), so the order does not matter.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)))
}

/// `shuffle_epi8` control repeating byte `s` 8 times, then byte `s + 1` 8 times.
#[inline(always)]
fn pick_pair(s: i64) -> __m128i {
    const REP: i64 = 0x0101_0101_0101_0101;
    // SAFETY: SSE2 is part of the x86-64 baseline.
    unsafe { _mm_set_epi64x((s + 1) * REP, s * REP) }
}

/// The 6-bit quants of one 128-value half as four 32-byte vectors (values `32k..32k+32`),
/// from its 64 `ql` bytes `(b1, b2)` and 32 `qh` bytes `hb`; written once for 256- and
/// 512-bit registers.
macro_rules! unpack_half {
    ($and:ident, $or:ident, $slli:ident, $srli:ident, $set1:ident, $b1:expr, $b2:expr, $hb:expr) => {{
        let m15 = $set1(15);
        let (b1, b2, hb) = ($b1, $b2, $hb);
        let h0 = $slli::<4>($and(hb, $set1(0x03)));
        let h1 = $slli::<2>($and(hb, $set1(0x0c)));
        let h2 = $and(hb, $set1(0x30));
        let h3 = $srli::<2>($and(hb, $set1(0xc0u8 as i8)));
        [
            $or($and(b1, m15), h0),
            $or($and(b2, m15), h1),
            $or($and($srli::<4>(b1), m15), h2),
            $or($and($srli::<4>(b2), m15), h3),
        ]
    }};
}

/// The 128 codes (0..64) of one half block in natural order, 32 per register, from its 64
/// `ql` bytes `(b1, b2)` and 32 `qh` bytes `hb`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_codes(b1: __m256i, b2: __m256i, hb: __m256i) -> [__m256i; 4] {
    unpack_half!(
        _mm256_and_si256,
        _mm256_or_si256,
        _mm256_slli_epi16,
        _mm256_srli_epi16,
        _mm256_set1_epi8,
        b1,
        b2,
        hb
    )
}

/// `R` activation rows against one weight row: the weight quants are unpacked once per block,
/// and every row keeps its own accumulator, so each result is that of a one-row call.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` and every `x[r]` must hold `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2<const R: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    x: [*const u8; R],
) -> [f32; R] {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut tiled = [0f32; R];
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let dw = f16_at(wb.add(W_D));
            let sc8 = _mm_loadu_si128(wb.add(W_SCALES) as *const __m128i);
            let sc16 = _mm256_cvtepi8_epi16(sc8);
            let scales: [__m256i; 8] = std::array::from_fn(|c| {
                _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick_pair(2 * c as i64)))
            });
            let mut sumi = [_mm256_setzero_si256(); R];
            for j in 0..2 {
                let ld = |off: usize| _mm256_loadu_si256(wb.add(off) as *const __m256i);
                let q = unpack_half!(
                    _mm256_and_si256,
                    _mm256_or_si256,
                    _mm256_slli_epi16,
                    _mm256_srli_epi16,
                    _mm256_set1_epi8,
                    ld(64 * j),
                    ld(64 * j + 32),
                    ld(W_QH + 32 * j)
                );
                for (r, sumi) in sumi.iter_mut().enumerate() {
                    let yb = x[r].add(i * Q8K_BYTES);
                    let mut p = [_mm256_setzero_si256(); 4];
                    for (k, p) in p.iter_mut().enumerate() {
                        let y =
                            _mm256_loadu_si256(yb.add(Y_QS + 128 * j + 32 * k) as *const __m256i);
                        *p = _mm256_madd_epi16(scales[4 * j + k], _mm256_maddubs_epi16(q[k], y));
                    }
                    *sumi = _mm256_add_epi32(*sumi, _mm256_add_epi32(p[0], p[1]));
                    *sumi = _mm256_add_epi32(*sumi, _mm256_add_epi32(p[2], p[3]));
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let yb = x[r].add(i * Q8K_BYTES);
                let yd = (yb as *const f32).read_unaligned();
                let d = yd * dw;
                let bsums = _mm256_loadu_si256(yb.add(Y_BSUMS) as *const __m256i);
                let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
                let sumi = _mm256_sub_epi32(sumi[r], offset);
                if TILED {
                    let t = hsum_i32(sumi) as f32 * dw;
                    tiled[r] = t.mul_add(yd, tiled[r]);
                } else {
                    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
                }
            }
        }
        if TILED {
            return tiled;
        }
        acc.map(|a| hsum_float_8(a))
    }
}

/// 32 bytes at `p` in the low half of a 512-bit register and 32 bytes at `p + second` in
/// the high half.
///
/// # Safety
/// Both 32-byte ranges must be readable.
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn load_pair(p: *const u8, second: usize) -> __m512i {
    // SAFETY: the caller guarantees both ranges are readable; unaligned loads.
    unsafe {
        _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(p as *const __m256i)),
            _mm256_loadu_si256(p.add(second) as *const __m256i),
            1,
        )
    }
}

/// Same lane integers as [`dot_avx2`], both 128-value halves at once: the upper 256 bits of
/// every register hold the second half, and the halves are added (exactly) at the end.
///
/// # Safety
/// AVX2, FMA, F16C and AVX-512 F/BW/VNNI must be available; `w` and `x` must hold `nb`
/// blocks each.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_avx512<const R: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    x: [*const u8; R],
) -> [f32; R] {
    // SAFETY (whole body): every pointer stays inside block `i` < `nb` of its buffer, which
    // the caller guarantees; all loads are unaligned ones.
    unsafe {
        // 16-bit lane `l` of chunk `k` (half h = l / 16) takes scale 8h + 2k + (l % 16) / 8.
        let idx: [__m512i; 4] = std::array::from_fn(|k| {
            let v: [i16; 32] =
                std::array::from_fn(|l| (8 * (l / 16) + 2 * k + (l % 16) / 8) as i16);
            std::mem::transmute::<[i16; 32], __m512i>(v)
        });
        let mut acc = [_mm256_setzero_ps(); R];
        let mut tiled = [0f32; R];
        for i in 0..nb {
            let wb = w.add(i * BLOCK_BYTES);
            let dw = f16_at(wb.add(W_D));
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wb.add(W_SCALES) as *const __m128i));
            let sc = _mm512_castsi256_si512(sc16);
            // Spelled out: a closure would not inherit the target features, and the
            // permutes would become calls.
            let s: [__m512i; 4] = [
                _mm512_permutexvar_epi16(idx[0], sc),
                _mm512_permutexvar_epi16(idx[1], sc),
                _mm512_permutexvar_epi16(idx[2], sc),
                _mm512_permutexvar_epi16(idx[3], sc),
            ];
            let q = unpack_half!(
                _mm512_and_si512,
                _mm512_or_si512,
                _mm512_slli_epi16,
                _mm512_srli_epi16,
                _mm512_set1_epi8,
                load_pair(wb, 64),
                load_pair(wb.add(32), 64),
                _mm512_loadu_si512(wb.add(W_QH) as *const _)
            );
            for (r, acc) in acc.iter_mut().enumerate() {
                let yb = x[r].add(i * Q8K_BYTES);
                let yd = (yb as *const f32).read_unaligned();
                let d = yd * dw;
                let bsums = _mm256_loadu_si256(yb.add(Y_BSUMS) as *const __m256i);
                let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
                let mut sumi = _mm512_setzero_si512();
                for (k, q) in q.iter().enumerate() {
                    let y = load_pair(yb.add(Y_QS + 32 * k), 128);
                    sumi = _mm512_dpwssd_epi32(sumi, s[k], _mm512_maddubs_epi16(*q, y));
                }
                let sumi = _mm256_add_epi32(
                    _mm512_castsi512_si256(sumi),
                    _mm512_extracti64x4_epi64(sumi, 1),
                );
                let sumi = _mm256_sub_epi32(sumi, offset);
                if TILED {
                    let t = hsum_i32(sumi) as f32 * dw;
                    tiled[r] = t.mul_add(yd, tiled[r]);
                } else {
                    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
                }
            }
        }
        if TILED {
            return tiled;
        }
        acc.map(|a| hsum_float_8(a))
    }
}

/// This format's SIMD kernels (see [`super::SimdKernels`]).
pub(crate) fn kernels() -> super::SimdKernels {
    use super::LevelKernels;
    #[allow(unused_imports)]
    use crate::dispatch::Tile;
    super::SimdKernels {
        ty: crate::GgmlType::Q6_K,
        avx2: LevelKernels {
            one: Some(vec_dot_avx2),
            x4: Some(vec_dot_x4_avx2),
            w4: None,
            tile: None,
            gemv_tile: None,
        },
        avx512: LevelKernels {
            one: Some(vec_dot_avx512),
            x4: Some(vec_dot_x4_avx512),
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
            ktest::check_fixture_bit_exact("Q6_K", name, k);
        }
    }

    #[test]
    fn close_to_scalar_and_levels_agree_bitwise() {
        ktest::check_against_scalar(&ktest::Q6K, crate::q6_k::vec_dot, &levels());
    }

    /// Whole llama.cpp matmuls: 6 tokens go through `vec_dot`, 22 and 37 through the tiled
    /// K-quant matmul (hashes from the generator described at `ktest::check_matmul_hash`).
    #[test]
    fn matmuls_equal_llama_cpp_vec_dot_and_tiled_paths() {
        let q = crate::q6_k::quantize;
        type Pair = (ktest::Kernel, ktest::Kernel);
        let mut sets: Vec<Pair> = Vec::new();
        if ktest::has_avx2() {
            sets.push((vec_dot_avx2, vec_dot_tiled_avx2));
        }
        if ktest::has_avx512() {
            sets.push((vec_dot_avx512, vec_dot_tiled_avx512));
        }
        for (plain, tiled) in sets {
            let f = &ktest::Q6K;
            ktest::check_against_scalar(f, crate::q6_k::vec_dot, &[("tiled", tiled)]);
            ktest::check_matmul_hash(f, q, (512, 32, 6), &|_| plain, 0x5f98_17cf_40d8_23b3);
            ktest::check_matmul_hash(f, q, (512, 32, 22), &|_| tiled, 0x6059_5aff_2abd_5a03);
            ktest::check_matmul_hash(f, q, (768, 48, 37), &|_| tiled, 0xee50_6d25_2afd_a2d5);
        }
    }

    #[test]
    fn dispatch_offers_tiled_order() {
        use crate::dispatch::{active_level, SimdLevel};
        use crate::order::tiled_dot;
        let t = tiled_dot(crate::GgmlType::Q6_K);
        assert_eq!(t.is_some(), active_level() >= SimdLevel::Avx2);
        if let Some(t) = t {
            let f = ktest::Q6K;
            let q = crate::q6_k::quantize;
            ktest::check_matmul_hash(&f, q, (512, 32, 22), &|_| t.one, 0x6059_5aff_2abd_5a03);
            ktest::check_x4(&f, t.one, t.x4.unwrap());
        }
        assert!(tiled_dot(crate::GgmlType::Q8_0).is_none());
    }

    #[test]
    fn llama_cpp_order_follows_ggml_rules() {
        use crate::dispatch::{active_level, SimdLevel};
        use crate::order::{llama_cpp_order, LlamaCppOrder as O};
        use crate::GgmlType::{Q4_K, Q6_K, Q8_0};
        let simd = active_level() >= SimdLevel::Avx2;
        assert!(matches!(llama_cpp_order(Q6_K, 16, 7), O::VecDot));
        assert_eq!(matches!(llama_cpp_order(Q6_K, 16, 8), O::Tiled(_)), simd);
        assert_eq!(matches!(llama_cpp_order(Q4_K, 16, 1), O::Repacked(_)), simd);
        assert_eq!(matches!(llama_cpp_order(Q4_K, 12, 9), O::Tiled(_)), simd);
        assert!(matches!(llama_cpp_order(Q4_K, 12, 2), O::VecDot));
        assert!(matches!(llama_cpp_order(Q8_0, 16, 100), O::VecDot));
    }

    #[test]
    fn tiled_order_tile_equals_one_row_kernel_bitwise() {
        if ktest::has_avx512() {
            use super::super::q6_k_tile as t;
            let pack = crate::dispatch::TilePack {
                bytes: t::pack_bytes,
                f: t::pack,
            };
            ktest::check_tile(
                &ktest::Q6K,
                vec_dot_tiled_avx512,
                t::tile_avx512,
                Some(pack),
                t::ROWS,
                t::TOKS,
            );
        }
    }

    #[test]
    fn four_row_kernels_equal_one_row_kernels_bitwise() {
        let mut x4: Vec<(ktest::Kernel, ktest::KernelX4)> = Vec::new();
        if ktest::has_avx2() {
            x4.push((vec_dot_avx2, vec_dot_x4_avx2));
        }
        if ktest::has_avx512() {
            x4.push((vec_dot_avx512, vec_dot_x4_avx512));
        }
        if ktest::has_avx2() {
            x4.push((vec_dot_tiled_avx2, vec_dot_tiled_x4_avx2));
        }
        if ktest::has_avx512() {
            x4.push((vec_dot_tiled_avx512, vec_dot_tiled_x4_avx512));
        }
        for (one, four) in x4 {
            ktest::check_x4(&ktest::Q6K, one, four);
        }
    }
}

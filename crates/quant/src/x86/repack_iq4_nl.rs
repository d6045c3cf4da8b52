//! IQ4_NL x Q8_0 in the order of llama.cpp's repacked IQ4_NL matmul (`iq4_nl_8x8`, used by
//! its x86 build with AVX2 for every IQ4_NL matrix with a multiple of 8 rows): one float
//! accumulator per output, each block's exact integer dot added with one fused multiply-add,
//! `acc = fma(isum, d_w * d_x, acc)`, as for Q4_0 (see [`super::repack_q4_0`], whose
//! transpose this shares). The codes become grid values through a byte shuffle; those reach
//! ±127, so products go through ggml's sign trick (|w| times x with w's sign) to stay inside
//! `maddubs`'s 16-bit pair sums.

use std::arch::x86_64::*;

use super::f16_at;
use super::repack_q4_0::{dot_acc_avx2, dot_acc_vnni, reduce8, transpose8, ROWS};
use crate::iq4_nl::{BLOCK, BYTES, KVALUES};
use crate::q8_0::BYTES as X_BYTES;

/// The 32 grid values of one block (codes of elements 0..16 in the low nibbles, 16..32 in
/// the high ones), in element order.
///
/// # Safety
/// `p` must be readable for 16 bytes; AVX2 must be present.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn values_32(p: *const u8, lut: __m256i) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes; unaligned load.
    let tmp = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let codes = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp),
        _mm256_set1_epi8(0x0f),
    );
    _mm256_shuffle_epi8(lut, codes)
}

macro_rules! kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the 8 weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Lane `r` of result `t` is the dot of
        /// weight row `r` with activation row `t`.
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize>(
            nb: usize,
            w: [*const u8; ROWS],
            x: [*const u8; R],
        ) -> [__m256; R] {
            // SAFETY: KVALUES is 16 bytes; the same table in both 128-bit halves.
            let lut = unsafe {
                let t = _mm_loadu_si128(KVALUES.as_ptr() as *const __m128i);
                _mm256_set_m128i(t, t)
            };
            let mut acc = [_mm256_setzero_ps(); R];
            for i in 0..nb {
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    let mut d = [0u16; ROWS];
                    let mut vals = [_mm256_setzero_si256(); ROWS];
                    for ((d, v), wr) in d.iter_mut().zip(vals.iter_mut()).zip(w) {
                        let b = wr.add(i * BYTES);
                        *d = (b as *const u16).read_unaligned();
                        *v = values_32(b.add(2), lut);
                    }
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
                    let zero = _mm256_setzero_si256();
                    if R < 3 {
                        // Too few tokens to pay for the transpose: per row, the 32 products
                        // in 8 lanes, then the lanes of the 8 rows summed into row order.
                        for (acc, xr) in acc.iter_mut().zip(x) {
                            let bx = xr.add(i * X_BYTES);
                            let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                            let mut p = [zero; ROWS];
                            for (p, &v) in p.iter_mut().zip(&vals) {
                                *p = $dot(zero, _mm256_sign_epi8(v, v), _mm256_sign_epi8(qy, v));
                            }
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at(bx)));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8(p)), d, *acc);
                        }
                        continue;
                    }
                    // Lane r of v[k]: values 4k..4k+4 of row r, so a product with activation
                    // values 4k..4k+4 broadcast to every lane lands in the row's own lane.
                    let v = transpose8(vals);
                    let mut av = [zero; ROWS];
                    for (a, &vk) in av.iter_mut().zip(&v) {
                        *a = _mm256_sign_epi8(vk, vk);
                    }
                    for (acc, xr) in acc.iter_mut().zip(x) {
                        let bx = xr.add(i * X_BYTES);
                        let xq = bx.add(2) as *const i32;
                        let mut isum = zero;
                        for (k, (&ak, &vk)) in av.iter().zip(&v).enumerate() {
                            let xk = _mm256_set1_epi32(xq.add(k).read_unaligned());
                            isum = $dot(isum, ak, _mm256_sign_epi8(xk, vk));
                        }
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at(bx)));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, *acc);
                    }
                }
            }
            acc
        }
    };
}

kernel!(gemm_avx2, "avx2,fma,f16c", dot_acc_avx2);
kernel!(
    gemm_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_acc_vnni
);

// AVX2 has 16 vector registers: 4 accumulators beside the 8 transposed weight vectors.
super::repack_q4_0::entry!(tile_avx2, gemm_avx2, 4, "IQ4_NL");
super::repack_q4_0::entry!(tile_avx512, gemm_avx512, 8, "IQ4_NL");

/// Most activation rows per call at each level.
pub(crate) const TOKS_AVX2: usize = 4;
pub(crate) const TOKS_AVX512: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel, TileFn};
    use crate::testkit::simd::Rng;

    /// `count` rows of `nb` random blocks of `bytes` bytes, each led by a `scale` f16.
    fn rows(rng: &mut Rng, count: usize, nb: usize, bytes: usize, extreme: bool) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                // Q8_0 quants are within ±127 (ggml's quantizer never writes -128, which
                // the sign trick would turn into -128 again, as in ggml).
                let mut r: Vec<u8> = (0..nb * bytes)
                    .map(|_| match rng.next() as u8 {
                        0x80 => 0x81,
                        b => b,
                    })
                    .collect();
                for b in r.chunks_exact_mut(bytes) {
                    let d = if extreme {
                        [0u16, 0x8000, 0x3c00, 0x7bff][rng.below(4) as usize]
                    } else {
                        half::f16::from_f32(rng.normal() * 0.01).to_bits()
                    };
                    b[..2].copy_from_slice(&d.to_le_bytes());
                    if extreme {
                        // Codes 0 (-127) or 15 (113); activations -127 / 127.
                        let q = if bytes == BYTES {
                            [0x00, 0xff][i % 2]
                        } else {
                            [0x81, 0x7f][i % 2]
                        };
                        b[2..].fill(q);
                    }
                }
                r
            })
            .collect()
    }

    /// Every tile shape at every level equals the scalar reference of the repacked order bit
    /// for bit, on random blocks and on the grid's ends.
    #[test]
    fn tiles_equal_the_scalar_repacked_order() {
        let levels: Vec<(SimdLevel, TileFn, usize)> = [
            (SimdLevel::Avx2, tile_avx2 as TileFn, TOKS_AVX2),
            (SimdLevel::Avx512, tile_avx512, TOKS_AVX512),
        ]
        .into_iter()
        .filter(|(l, _, _)| *l <= detected_level())
        .collect();
        let mut rng = Rng::new(41);
        for extreme in [false, true] {
            for nb in [1usize, 3, 18, 48] {
                let n = nb * BLOCK;
                let ws = rows(&mut rng, ROWS, nb, BYTES, extreme);
                let xs = rows(&mut rng, TOKS_AVX512, nb, X_BYTES, extreme);
                let wr: Vec<&[u8]> = ws.iter().map(|r| r.as_slice()).collect();
                for (level, f, max) in &levels {
                    for toks in 1..=*max {
                        let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| r.as_slice()).collect();
                        let mut out = vec![0f32; ROWS * toks];
                        f(n, &wr, &xr, &mut out);
                        for t in 0..toks {
                            for r in 0..ROWS {
                                let want = crate::iq4_nl::vec_dot_repacked(n, wr[r], xr[t]);
                                assert_eq!(
                                    out[t * ROWS + r].to_bits(),
                                    want.to_bits(),
                                    "{level:?} extreme={extreme} nb={nb} toks={toks} t={t} r={r}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A whole matmul in the repacked order hashes to what llama.cpp b11434's repacked
    /// IQ4_NL matmul gave (scripts/quant-goldens: `matmul_hash iq4_nl K M N repack`).
    #[test]
    fn repacked_order_equals_llama_cpp_matmul() {
        for (k, m, n_tok, want) in [
            (512, 32, 1, 0x52719ff4216d34abu64),
            (512, 32, 3, 0x079425916aa5400a),
            (512, 32, 4, 0x3be1175149e68ce8),
            (512, 32, 7, 0xc9acdff0558b80f4),
            (512, 32, 8, 0x0f9be8d438c7dc4e),
            (512, 32, 22, 0x86136f57a704e8c3),
            // SmolLM2's attention K/V shape, a prompt's worth of tokens, 2 threads in ggml.
            (576, 192, 37, 0x21c8f7cdd3ec8e73),
        ] {
            let got = crate::testkit::matmul_hash(
                crate::GgmlType::IQ4_NL,
                crate::iq4_nl::quantize,
                (k, m, n_tok),
                &|_| crate::iq4_nl::vec_dot_repacked,
            );
            assert_eq!(got, want, "{k} x {m} times {n_tok} tokens");
        }
    }
}

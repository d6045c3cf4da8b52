//! Activation-row quantization as llama.cpp's x86 CPU backend does it. ggml's SIMD Q8_0 /
//! Q8_1 quantizers differ from the reference ones in two details that flip a value now and
//! then: the inverse scale is `127 / amax` (not `1 / (amax / 127)`) and rounding is
//! half-to-even. Other types use the reference quantizer, which is what x86 runs too.

use half::f16;
use quant::GgmlType;

use crate::ComputeError;

const QK: usize = 32;

/// One block of 32: `(d, sum of quants)`, quants written to `qs`. Uses the AVX2 version when
/// the dispatch level allows it; both give the same bits.
fn block_q8(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 is present (checked by the dispatch level); block_q8_avx2 checks its
        // slice lengths itself.
        return unsafe { x86::block_q8_avx2(x, qs) };
    }
    block_q8_scalar(x, qs)
}

#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    quant::dispatch::active_level() >= quant::SimdLevel::Avx2
}

fn block_q8_scalar(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = cvtps_epi32((v * id).round_ties_even());
        // ggml sums the 32-bit values (wrapping) and stores them through saturating packs.
        sum = sum.wrapping_add(r);
        *q = r.clamp(-128, 127) as i8 as u8;
    }
    (d, sum)
}

/// x86's float-to-int conversion: NaN and out-of-range values become `i32::MIN`. They occur
/// when amax is subnormal (`127 / amax` overflows to infinity) or the block holds NaN or
/// infinity; ggml then stores -128, not the 0 or saturated value of Rust's `as`.
fn cvtps_epi32(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::block_q8_scalar`] with AVX2, in the same operations as ggml's
    /// `quantize_row_q8_0` (`127 / amax`, one f32 multiply, round half to even, saturating
    /// packs).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block_q8_avx2(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
        assert!(x.len() == 32 && qs.len() == 32);
        // SAFETY: 32 floats are readable (asserted).
        let v = unsafe { [0, 8, 16, 24].map(|k| _mm256_loadu_ps(x.as_ptr().add(k))) };
        let sign = _mm256_set1_ps(-0.0);
        let mut amax = _mm256_setzero_ps();
        for &vk in &v {
            // Abs first so that max sees no sign; max_ps(a, m) keeps m when a is NaN.
            amax = _mm256_max_ps(_mm256_andnot_ps(sign, vk), amax);
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let i = v.map(|vk| {
            _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(vk, id),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            ))
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let s4 = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01));
        // The packs work within 128-bit halves; the permute puts the 32 bytes back in order.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: 32 writable bytes (asserted).
        unsafe { _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, p) };
        (d, _mm_cvtsi128_si32(s1))
    }
}

/// Quantizes one activation row `x` to `ty` into `out` (exactly `ty.row_bytes(x.len())`).
pub(crate) fn quantize_activation(
    ty: GgmlType,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), ComputeError> {
    match ty {
        GgmlType::Q8_0 if x.len().is_multiple_of(QK) && out.len() == x.len() / QK * 34 => {
            for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
                let (d, _) = block_q8(xb, &mut ob[2..]);
                ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
            }
            Ok(())
        }
        GgmlType::Q8_1 if x.len().is_multiple_of(QK) && out.len() == x.len() / QK * 36 => {
            for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(36)) {
                let (d, sum) = block_q8(xb, &mut ob[4..]);
                ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                ob[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
            }
            Ok(())
        }
        // Same bytes as the reference quantizer, just faster.
        GgmlType::Q8_K if x.len().is_multiple_of(256) && out.len() == x.len() / 256 * 292 => {
            quant::dispatch::quantize_q8_k(x, out);
            Ok(())
        }
        _ => Ok(quant::quantize_row(ty, x, out)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_to_even_with_127_over_amax() {
        // amax 127 -> id 1 exactly: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0 (reference roundf gives 3, 4, -1)
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -0.5;
        let mut out = vec![0u8; 34];
        quantize_activation(GgmlType::Q8_0, &x, &mut out).unwrap();
        assert_eq!(f16::from_le_bytes([out[0], out[1]]).to_f32(), 1.0);
        assert_eq!(&out[2..6], &[127u8, 2, 4, 0]);
        // values dequantize back within half a step
        let mut back = vec![0f32; 32];
        quant::dequantize_row(GgmlType::Q8_0, &out, &mut back).unwrap();
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 0.5);
        }
    }

    #[test]
    fn simd_blocks_equal_scalar_blocks() {
        // Random magnitudes across many octaves, exact halves (ties), zeros, negative zero,
        // subnormals (amax so small that 127 / amax is infinite), NaN and infinity.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..4000 {
            let x: Vec<f32> = (0..32)
                .map(|_| {
                    let r = next();
                    let mag = f32::powi(2.0, (r % 60) as i32 - 30);
                    let v = ((r >> 8) % 2001) as f32 / 1000.0 - 1.0;
                    match case % 8 {
                        0 => (((r >> 20) % 255) as f32 - 127.0) * 0.5,
                        1 => [0.0, -0.0, f32::from_bits(1), -1e-40][(r >> 30) as usize % 4],
                        2 if r % 16 == 0 => {
                            [f32::NAN, f32::INFINITY, -f32::INFINITY][(r >> 30) as usize % 3]
                        }
                        _ => v * mag,
                    }
                })
                .collect();
            let (mut a, mut b) = (vec![0u8; 32], vec![0u8; 32]);
            let want = block_q8_scalar(&x, &mut a);
            let got = block_q8(&x, &mut b);
            assert_eq!(
                (got.0.to_bits(), got.1),
                (want.0.to_bits(), want.1),
                "case {case}: {x:?}"
            );
            assert_eq!(a, b, "case {case}: {x:?}");
        }
    }

    #[test]
    fn q8_1_stores_scaled_sum() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 10.0).collect();
        let mut out = vec![0u8; 36];
        quantize_activation(GgmlType::Q8_1, &x, &mut out).unwrap();
        let d = f16::from_le_bytes([out[0], out[1]]).to_f32();
        let s = f16::from_le_bytes([out[2], out[3]]).to_f32();
        let qsum: i32 = out[4..].iter().map(|&b| b as i8 as i32).sum();
        assert!((d - 21.0 / 127.0).abs() < 1e-4);
        assert!((s - f16::from_f32(21.0f32 / 127.0 * qsum as f32).to_f32()).abs() < 1e-6);
        assert_eq!(out[4 + 31] as i8, 127);
    }
}

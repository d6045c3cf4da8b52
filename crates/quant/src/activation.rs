//! Every activation quantizer in one place: a matmul quantizes each activation row to its
//! weight type's partner (Q8_0, Q8_1, Q8_K, or F16/BF16/F32 as they are) exactly as llama.cpp's
//! x86 CPU backend does. ggml's SIMD Q8_0 / Q8_1 quantizers differ from the reference ones in
//! two details that flip a value now and then: the inverse scale is `127 / amax` (not
//! `1 / (amax / 127)`) and rounding is half-to-even. Q8_K and the others use the reference
//! quantizer's bytes, which is what x86 runs too (Q8_K just faster).
//!
//! On aarch64 the Q8_0 / Q8_1 quantizers follow ggml's ARM build instead (every aarch64 CPU
//! has NEON, so llama.cpp there always runs it): the inverse scale is `1 / (amax / 127)`,
//! rounding is half-to-even with saturation, and the 32-bit value is truncated to a byte.

use half::f16;

use crate::{GgmlType, QuantError};

const QK: usize = 32;

/// One block of 32: `(d, sum of quants)`, quants written to `qs`. Uses the AVX2 version when
/// the dispatch level allows it; both give the same bits.
fn block_q8(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of the aarch64 baseline; the function checks its slice lengths.
    return unsafe { crate::aarch64::activation::block_q8_neon(x, qs) };
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 is present (checked by the dispatch level); block_q8_avx2 checks its
        // slice lengths itself.
        return unsafe { crate::x86::activation::block_q8_avx2(x, qs) };
    }
    #[allow(unreachable_code)]
    block_q8_scalar(x, qs)
}

#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    crate::dispatch::active_level() >= crate::SimdLevel::Avx2
}

#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
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

/// The reference of ggml's ARM block quantizer (see the module comment), which the NEON
/// version must equal bit for bit.
#[cfg(any(test, target_arch = "aarch64"))]
#[allow(dead_code)]
pub(crate) fn block_q8_arm_scalar(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| {
        let a = v.abs();
        // fmax: NaN wins.
        if a.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(a)
        }
    });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // fcvtns: nearest, ties to even, saturating, NaN to 0 (as Rust's `as`).
        let r = (v * id).round_ties_even() as i32;
        sum = sum.wrapping_add(r);
        *q = r as u8;
    }
    (d, sum)
}

/// x86's float-to-int conversion: NaN and out-of-range values become `i32::MIN`. They occur
/// when amax is subnormal (`127 / amax` overflows to infinity) or the block holds NaN or
/// infinity; ggml then stores -128, not the 0 or saturated value of Rust's `as`.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn cvtps_epi32(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// Quantizes activations to Q8_K (`src` a multiple of 256 values, `dst` 292 bytes per 256)
/// with the fastest available code. On x86-64 every level gives exactly the bytes of
/// [`crate::q8_k::quantize`], which is also what llama.cpp's x86 build uses (it has no SIMD
/// Q8_K quantizer), so this only changes the speed. On aarch64 it gives ggml's ARM bytes,
/// whose rounding step is fused (see `aarch64::activation`).
pub fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of the aarch64 baseline; the function checks its slice lengths.
    return unsafe { crate::aarch64::activation::quantize_q8_k_neon(src, dst) };
    #[cfg(target_arch = "x86_64")]
    if crate::dispatch::active_level() >= crate::SimdLevel::Avx2 {
        return crate::x86::q8_k::quantize_avx2(src, dst);
    }
    #[allow(unreachable_code)]
    crate::q8_k::quantize(src, dst)
}

/// Quantizes one activation row `x` to `ty` into `out` (exactly `ty.row_bytes(x.len())`).
pub fn quantize(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
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
            quantize_q8_k(x, out);
            Ok(())
        }
        _ => crate::quantize_row(ty, x, out),
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
        quantize(GgmlType::Q8_0, &x, &mut out).unwrap();
        assert_eq!(f16::from_le_bytes([out[0], out[1]]).to_f32(), 1.0);
        assert_eq!(&out[2..6], &[127u8, 2, 4, 0]);
        // values dequantize back within half a step
        let mut back = vec![0f32; 32];
        crate::dequantize_row(GgmlType::Q8_0, &out, &mut back).unwrap();
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
            #[cfg(target_arch = "aarch64")]
            let want = block_q8_arm_scalar(&x, &mut a);
            #[cfg(not(target_arch = "aarch64"))]
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
        quantize(GgmlType::Q8_1, &x, &mut out).unwrap();
        let d = f16::from_le_bytes([out[0], out[1]]).to_f32();
        let s = f16::from_le_bytes([out[2], out[3]]).to_f32();
        let qsum: i32 = out[4..].iter().map(|&b| b as i8 as i32).sum();
        assert!((d - 21.0 / 127.0).abs() < 1e-4);
        assert!((s - f16::from_f32(21.0f32 / 127.0 * qsum as f32).to_f32()).abs() < 1e-6);
        assert_eq!(out[4 + 31] as i8, 127);
    }
}

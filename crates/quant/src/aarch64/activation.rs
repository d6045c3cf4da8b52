//! NEON activation quantization (see [`crate::activation`]).

use std::arch::aarch64::*;

/// ggml's ARM `quantize_row_q8_0` / `_q8_1` block: `d = amax / 127`, `id = 1 / d`, one f32
/// multiply, round half to even with saturation (`fcvtns`; NaN gives 0), then the 32-bit
/// value truncated to its low byte. Returns `(d, sum of the 32-bit values)`. NEON is part of
/// the aarch64 baseline, so this needs no detection.
#[target_feature(enable = "neon")]
pub(crate) fn block_q8_neon(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    assert!(x.len() == 32 && qs.len() == 32);
    // SAFETY: 32 floats are readable (asserted).
    let v: [float32x4_t; 8] = std::array::from_fn(|j| unsafe { vld1q_f32(x.as_ptr().add(4 * j)) });
    let a = v.map(|t| vabsq_f32(t));
    // ggml's tree: neighbours, then two apart, then four apart, then across the lanes.
    let m2: [float32x4_t; 4] = std::array::from_fn(|j| vmaxq_f32(a[2 * j], a[2 * j + 1]));
    let m4 = [vmaxq_f32(m2[0], m2[1]), vmaxq_f32(m2[2], m2[3])];
    let amax = vmaxvq_f32(vmaxq_f32(m4[0], m4[1]));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut acc = vdupq_n_s32(0);
    for (j, vj) in v.iter().enumerate() {
        let vi = vcvtnq_s32_f32(vmulq_n_f32(*vj, id));
        let mut lanes = [0i32; 4];
        // SAFETY: 4 writable i32s.
        unsafe { vst1q_s32(lanes.as_mut_ptr(), vi) };
        for (k, &l) in lanes.iter().enumerate() {
            qs[4 * j + k] = l as u8;
        }
        acc = vaddq_s32(acc, vi);
    }
    (d, vaddvq_s32(acc))
}

/// Q8_K activations as ggml's ARM build makes them: its reference quantizer, which GCC
/// vectorises for aarch64 with the rounding step `iscale * x + 12582912` contracted into one
/// fused multiply-add (`fmla`), so a product within an ulp of a rounding boundary can round
/// the other way than in the unfused [`crate::q8_k::quantize`] (x86's bytes). Otherwise the
/// same: the first value of largest magnitude sets `iscale = -127 / max`, quants capped at
/// 127, 16-value sums, `d = 1 / iscale`, an all-zero block all zeros.
#[target_feature(enable = "neon")]
pub(crate) fn quantize_q8_k_neon(src: &[f32], dst: &mut [u8]) {
    const QK: usize = crate::k_common::QK_K;
    assert!(src.len().is_multiple_of(QK) && dst.len() == src.len() / QK * 292);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(292)) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let (vs, magic) = (vdupq_n_f32(iscale), vdupq_n_f32(12_582_912.0));
        let (mask, bias, cap) = (
            vdupq_n_s32(0x007f_ffff),
            vdupq_n_s32(0x0040_0000),
            vdupq_n_s32(127),
        );
        for (g, xg) in x.chunks_exact(16).enumerate() {
            let q: [int32x4_t; 4] = std::array::from_fn(|k| {
                // SAFETY: 16 readable floats in xg.
                let v = unsafe { vld1q_f32(xg.as_ptr().add(4 * k)) };
                let bits = vreinterpretq_s32_f32(vfmaq_f32(magic, vs, v));
                vminq_s32(vsubq_s32(vandq_s32(bits, mask), bias), cap)
            });
            let h0 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            let h1 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            let bytes = vcombine_s8(vmovn_s16(h0), vmovn_s16(h1));
            // SAFETY: bytes 4 + 16g .. 4 + 16g + 16 of the 292-byte block.
            unsafe { vst1q_s8(b.as_mut_ptr().add(4 + 16 * g) as *mut i8, bytes) };
            let sum = vaddlvq_s8(bytes) as i16;
            b[260 + 2 * g..262 + 2 * g].copy_from_slice(&sum.to_le_bytes());
        }
        b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    /// The scalar statement of [`super::quantize_q8_k_neon`]: the reference with the fused
    /// rounding step.
    fn q8_k_arm_scalar(x: &[f32], b: &mut [u8]) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.fill(0);
            return;
        }
        let iscale = -127.0 / max;
        for (j, &v) in x.iter().enumerate() {
            let bits = iscale.mul_add(v, 12_582_912.0).to_bits() as i32;
            b[4 + j] = ((bits & 0x007f_ffff) - 0x0040_0000).min(127) as i8 as u8;
        }
        for g in 0..16 {
            let s: i32 = b[4 + 16 * g..20 + 16 * g]
                .iter()
                .map(|&q| q as i8 as i32)
                .sum();
            b[260 + 2 * g..262 + 2 * g].copy_from_slice(&(s as i16).to_le_bytes());
        }
        b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }

    #[test]
    fn q8_k_equals_its_scalar_statement_and_mostly_the_reference() {
        let mut r = crate::testkit::simd::Rng::new(21);
        let mut differ_from_reference = 0;
        for case in 0..400 {
            let x: Vec<f32> = (0..256)
                .map(|i| match case % 5 {
                    0 if i % 7 == 0 => 0.0,
                    1 => ((r.below(255) as f32) - 127.0) * 0.5,
                    _ => r.normal() * (2f32).powi(r.below(20) as i32 - 10),
                })
                .collect();
            let (mut got, mut want, mut reference) = ([0u8; 292], [0u8; 292], [0u8; 292]);
            // SAFETY: NEON is baseline on aarch64.
            unsafe { super::quantize_q8_k_neon(&x, &mut got) };
            q8_k_arm_scalar(&x, &mut want);
            crate::q8_k::quantize(&x, &mut reference);
            assert_eq!(got, want, "case {case}");
            differ_from_reference += (got != reference) as usize;
        }
        assert!(
            differ_from_reference < 40,
            "{differ_from_reference} of 400 blocks"
        );
    }
}

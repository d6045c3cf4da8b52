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

//! F16 x F16 in the order of ggml's NEON `ggml_vec_dot_f16` as built without the FP16
//! vector-arithmetic extension (`-march=armv8.2-a+dotprod` or `armv8-a`): halves widened to
//! f32, four accumulators of four lanes over steps of 16 (fused multiply-adds), reduced as
//! `(s0 + s2) + (s1 + s3)` then across the lanes pairwise into a double; the leftover
//! products rounded to f32 and added in double. The same kernel serves both levels.

use std::arch::aarch64::*;

use crate::GgmlType;

/// Four halves at `p` widened.
///
/// # Safety
/// `p` must be readable for 8 bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4(p: *const u16) -> float32x4_t {
    // SAFETY: 8 readable bytes (caller).
    unsafe { vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))) }
}

/// # Safety
/// `w` and `x` must be readable for `n` halves each.
#[target_feature(enable = "neon")]
unsafe fn dot(n: usize, w: *const u16, x: *const u16) -> f32 {
    let np = n / 16 * 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..np).step_by(16) {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4j + 4 <= np <= n (caller).
            let (wv, xv) = unsafe { (load4(w.add(i + 4 * j)), load4(x.add(i + 4 * j))) };
            *a = vfmaq_f32(*a, wv, xv);
        }
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[2]),
        vaddq_f32(acc[1], acc[3]),
    )) as f64;
    for i in np..n {
        // SAFETY: i < n (caller).
        let (a, b) = unsafe { (w.add(i).read_unaligned(), x.add(i).read_unaligned()) };
        s += (half::f16::from_bits(a).to_f32() * half::f16::from_bits(b).to_f32()) as f64;
    }
    s as f32
}

pub(crate) fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
    // SAFETY: NEON is baseline on aarch64; both buffers hold n halves (asserted); unaligned
    // loads only.
    unsafe { dot(n, w.as_ptr() as *const u16, x.as_ptr() as *const u16) }
}

/// This format's kernel, the same at both levels.
pub(crate) fn kernels() -> super::SimdKernels {
    let k = super::LevelKernels {
        one: Some(vec_dot),
        ..super::LevelKernels::NONE
    };
    super::SimdKernels {
        ty: GgmlType::F16,
        neon: k,
        dotprod: k,
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(crate::GgmlType::F16, |v| {
            half::f16::from_f32(v).to_le_bytes().to_vec()
        });
    }
}

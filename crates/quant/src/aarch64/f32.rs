//! F32 x F32 in the order of ggml's NEON `ggml_vec_dot_f32`: four accumulators of four lanes
//! over steps of 16 (fused multiply-adds), reduced as `(s0 + s2) + (s1 + s3)` then across the
//! lanes pairwise; the leftover elements fused into the scalar sum one by one. The same
//! kernel serves both levels (no integer products).

use std::arch::aarch64::*;

use crate::GgmlType;

/// # Safety
/// `w` and `x` must be readable for `n` floats each.
#[target_feature(enable = "neon")]
unsafe fn dot(n: usize, w: *const f32, x: *const f32) -> f32 {
    let np = n / 16 * 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..np).step_by(16) {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4j + 4 <= np <= n (caller).
            let (wv, xv) = unsafe { (vld1q_f32(w.add(i + 4 * j)), vld1q_f32(x.add(i + 4 * j))) };
            *a = vfmaq_f32(*a, wv, xv);
        }
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[2]),
        vaddq_f32(acc[1], acc[3]),
    ));
    for i in np..n {
        // SAFETY: i < n (caller).
        s = unsafe { (*w.add(i)).mul_add(*x.add(i), s) };
    }
    s
}

pub(crate) fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(
        w.len() >= 4 * n && x.len() >= 4 * n,
        "vec_dot: buffers too short for {n} elements"
    );
    // SAFETY: NEON is baseline on aarch64; both buffers hold n floats (asserted); unaligned
    // loads only.
    unsafe { dot(n, w.as_ptr() as *const f32, x.as_ptr() as *const f32) }
}

/// This format's kernel, the same at both levels.
pub(crate) fn kernels() -> super::SimdKernels {
    let k = super::LevelKernels {
        one: Some(vec_dot),
        ..super::LevelKernels::NONE
    };
    super::SimdKernels {
        ty: GgmlType::F32,
        neon: k,
        dotprod: k,
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(crate::GgmlType::F32, |v| v.to_le_bytes().to_vec());
    }
}

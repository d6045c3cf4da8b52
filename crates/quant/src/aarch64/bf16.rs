//! BF16 x BF16 as ggml's ARM build computes it: ggml has no NEON path for BF16 (only with the
//! BF16 extension, which the `neon` and `dotprod` builds lack), so every product is rounded to
//! f32 and added to a double in element order, exactly the scalar reference. NEON only forms
//! the products four at a time; the additions stay sequential.

use std::arch::aarch64::*;

use crate::GgmlType;

/// Four bf16 values at `p` widened.
///
/// # Safety
/// `p` must be readable for 8 bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4(p: *const u16) -> float32x4_t {
    // SAFETY: 8 readable bytes (caller).
    unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p))) }
}

/// # Safety
/// `w` and `x` must be readable for `n` values each.
#[target_feature(enable = "neon")]
unsafe fn dot(n: usize, w: *const u16, x: *const u16) -> f32 {
    let np = n / 4 * 4;
    let mut s = 0f64;
    for i in (0..np).step_by(4) {
        // SAFETY: i + 4 <= np <= n (caller).
        let p = unsafe { vmulq_f32(load4(w.add(i)), load4(x.add(i))) };
        let lo = vcvt_f64_f32(vget_low_f32(p));
        let hi = vcvt_high_f64_f32(p);
        s += vgetq_lane_f64::<0>(lo);
        s += vgetq_lane_f64::<1>(lo);
        s += vgetq_lane_f64::<0>(hi);
        s += vgetq_lane_f64::<1>(hi);
    }
    for i in np..n {
        // SAFETY: i < n (caller).
        let (a, b) = unsafe { (w.add(i).read_unaligned(), x.add(i).read_unaligned()) };
        s += (f32::from_bits((a as u32) << 16) * f32::from_bits((b as u32) << 16)) as f64;
    }
    s as f32
}

pub(crate) fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && x.len() >= 2 * n,
        "vec_dot: buffers too short for {n} elements"
    );
    // SAFETY: NEON is baseline on aarch64; both buffers hold n values (asserted); unaligned
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
        ty: GgmlType::BF16,
        neon: k,
        dotprod: k,
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::simd::*;

    #[test]
    fn agrees_with_scalar() {
        check_float_against_scalar(crate::GgmlType::BF16, |v| {
            ((v.to_bits() >> 16) as u16).to_le_bytes().to_vec()
        });
    }

    #[test]
    fn equals_scalar_bit_for_bit() {
        let mut r = Rng::new(11);
        for n in [1usize, 5, 64, 1001] {
            let w: Vec<u8> = (0..2 * n).map(|_| r.next() as u8).collect();
            let x: Vec<u8> = (0..2 * n).map(|_| r.next() as u8).collect();
            let want = crate::bf16::vec_dot(n, &w, &x);
            let got = super::vec_dot(n, &w, &x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "n {n}"
            );
        }
    }
}

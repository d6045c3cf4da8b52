//! NEON versions of the f16 accumulator helpers in `kernels`, for aarch64: `mad_f16` fused as
//! ggml's aarch64 builds do it (`kernels::fma_contracted`; unfused with
//! `TORCHLESS_SIMD=scalar`, the portable build), `scale_f16` (one rounding either way), four
//! halves at a time; the bits are the lane-by-lane references' (tested below).

use half::f16;
use std::arch::aarch64::*;

/// `y[i] = f16(y[i] + x[i] * v)` for the first `np` elements (a multiple of 4), fused or
/// multiplied then added, rounded once to f16 (round to nearest even, as `half`).
///
/// # Safety
/// `y` and `x` must be valid for `np` halves.
#[target_feature(enable = "neon")]
unsafe fn mad4(np: usize, y: *mut u16, x: *const u16, v: f32, fused: bool) {
    let vv = vdupq_n_f32(v);
    for i in (0..np).step_by(4) {
        // SAFETY: i + 4 <= np (caller).
        unsafe {
            let a = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(y.add(i))));
            let b = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x.add(i))));
            let r = if fused {
                vfmaq_f32(a, b, vv)
            } else {
                vaddq_f32(a, vmulq_f32(b, vv))
            };
            vst1_u16(y.add(i), vreinterpret_u16_f16(vcvt_f16_f32(r)));
        }
    }
}

/// `y[i] = f16(y[i] * v)` for the first `np` elements (a multiple of 4).
///
/// # Safety
/// `y` must be valid for `np` halves.
#[target_feature(enable = "neon")]
unsafe fn scale4(np: usize, y: *mut u16, v: f32) {
    for i in (0..np).step_by(4) {
        // SAFETY: i + 4 <= np (caller).
        unsafe {
            let a = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(y.add(i))));
            vst1_u16(
                y.add(i),
                vreinterpret_u16_f16(vcvt_f16_f32(vmulq_n_f32(a, v))),
            );
        }
    }
}

/// [`super::kernels::mad_f16_ref`] with NEON: fused as at a SIMD level, or unfused as the
/// portable level.
pub(crate) fn mad_f16(y: &mut [f16], x: &[f16], v: f32, fused: bool) {
    assert_eq!(y.len(), x.len());
    let np = y.len() / 4 * 4;
    // SAFETY: NEON is part of the aarch64 baseline; both slices hold np halves.
    unsafe {
        mad4(
            np,
            y.as_mut_ptr() as *mut u16,
            x.as_ptr() as *const u16,
            v,
            fused,
        )
    };
    super::kernels::mad_f16_ref(ref_level(fused), &mut y[np..], &x[np..], v);
}

/// A level whose lane-by-lane reference has the wanted fusing (`mad_f16_ref` fuses at every
/// level but the portable one).
fn ref_level(fused: bool) -> quant::dispatch::SimdLevel {
    use quant::dispatch::SimdLevel;
    if fused {
        SimdLevel::Neon
    } else {
        SimdLevel::Scalar
    }
}

/// [`super::kernels::scale_f16_ref`] with NEON.
pub(crate) fn scale_f16(y: &mut [f16], v: f32) {
    let np = y.len() / 4 * 4;
    // SAFETY: NEON is part of the aarch64 baseline; the slice holds np halves.
    unsafe { scale4(np, y.as_mut_ptr() as *mut u16, v) };
    super::kernels::scale_f16_ref(&mut y[np..], v);
}

#[cfg(test)]
mod tests {
    use super::super::kernels::{mad_f16_ref, scale_f16_ref};
    use half::f16;

    #[test]
    fn neon_helpers_equal_the_portable_references() {
        let mut s = 0x2545_f491u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let bits = |v: &[f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
        for n in [0usize, 1, 3, 4, 7, 64, 130] {
            for mag in [1.0f32, 6e4, 1e-5] {
                let mut val = || f16::from_f32((next() as f32 / u32::MAX as f32 - 0.5) * mag);
                let y0: Vec<f16> = (0..n).map(|_| val()).collect();
                let x: Vec<f16> = (0..n).map(|_| val()).collect();
                for v in [0.0f32, -0.0, 1.0, 0.37, 3.5, 1e-3, -2.0, 70000.0] {
                    for fused in [false, true] {
                        let (mut a, mut b) = (y0.clone(), y0.clone());
                        super::mad_f16(&mut a, &x, v, fused);
                        mad_f16_ref(super::ref_level(fused), &mut b, &x, v);
                        assert_eq!(bits(&a), bits(&b), "mad n {n} v {v} fused {fused}");
                    }
                    let (mut a, mut b) = (y0.clone(), y0.clone());
                    super::scale_f16(&mut a, v);
                    scale_f16_ref(&mut b, v);
                    assert_eq!(bits(&a), bits(&b), "scale n {n} v {v}");
                }
            }
        }
    }
}

//! F16: little-endian IEEE half floats, 2 bytes per element, no blocks.
//!
//! Conversion from f32 rounds to nearest even and collapses NaN to the canonical quiet NaN,
//! as ggml's portable `ggml_fp32_to_fp16_row` does.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::scalar::{f32_to_fp16, le_f16};

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (i, y) in dst.iter_mut().enumerate() {
        *y = le_f16(src, 2 * i);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len() / 2);
    let dst = &mut dst[..2 * n];
    if cfg!(target_endian = "little") && dst.as_ptr().align_offset(2) == 0 {
        // SAFETY: f16 is a plain 2-byte value valid for every bit pattern; the pointer is
        // aligned (checked) and the view covers exactly `dst`, borrowed for its lifetime.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut f16, n) };
        // F16C when present (vectorised), the same round-to-nearest-even as `f32_to_fp16`;
        // NaNs are then given that function's canonical bits.
        out.convert_from_f32_slice(&src[..n]);
        for (o, &x) in out.iter_mut().zip(src) {
            if x.is_nan() {
                *o = f16::from_bits(f32_to_fp16(x));
            }
        }
        return;
    }
    for (&x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_fp16(x).to_le_bytes());
    }
}

/// ggml's scalar `ggml_vec_dot_f16`: both sides widened to f32, each product rounded to f32,
/// accumulated in f64, rounded to f32 once at the end.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (le_f16(w, 2 * i) * le_f16(x, 2 * i)) as f64;
    }
    sum as f32
}

/// Dot in the order of llama.cpp's AVX-512 llamafile sgemm for F16 (`tinyBLAS` with 16-lane
/// vectors), which its x86 build uses for F16 matmuls of 2 or more tokens when the row count
/// is a multiple of 4: 16 lane accumulators, each element pair fused-multiply-added into
/// lane `i % 16` (a trailing partial vector zero-filled), then GCC's `_mm512_reduce_add_ps`
/// tree (halves, quarters, lanes two apart, the last two).
pub fn vec_dot_tinyblas16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0.0f32; 16];
    for s in (0..n).step_by(16) {
        for (l, a) in acc.iter_mut().enumerate() {
            let (wv, xv) = if s + l < n {
                (le_f16(w, 2 * (s + l)), le_f16(x, 2 * (s + l)))
            } else {
                (0.0, 0.0)
            };
            *a = wv.mul_add(xv, *a);
        }
    }
    let t: [f32; 8] = std::array::from_fn(|i| acc[i + 8] + acc[i]);
    let u: [f32; 4] = std::array::from_fn(|i| t[i + 4] + t[i]);
    (u[0] + u[2]) + (u[1] + u[3])
}

/// Dot in the order of llama.cpp's AVX2 + F16C llamafile sgemm for F16 (`tinyBLAS` with
/// 8-lane vectors), used by x86 builds without AVX-512 where [`vec_dot_tinyblas16`] applies
/// on AVX-512: 8 lane accumulators, element `i` fused-multiply-added into lane `i % 8` (a
/// trailing partial vector zero-filled), then `hsum`: the two 128-bit halves added, then
/// lanes two apart, then the last two.
pub fn vec_dot_tinyblas8(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0.0f32; 8];
    for s in (0..n).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            let (wv, xv) = if s + l < n {
                (le_f16(w, 2 * (s + l)), le_f16(x, 2 * (s + l)))
            } else {
                (0.0, 0.0)
            };
            *a = wv.mul_add(xv, *a);
        }
    }
    let u: [f32; 4] = std::array::from_fn(|i| acc[i + 4] + acc[i]);
    (u[0] + u[2]) + (u[1] + u[3])
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::F16,
    vec_dot_type: crate::GgmlType::F16,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("F16", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("F16", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar loop (f32 products, f64 sum).
        check_dot_fixture("F16", &fixture_rows("F16"), vec_dot, quantize, true);
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns("F16", quantize, dequantize, vec_dot, quantize, 64);
    }

    #[test]
    fn specials() {
        let src = [65504.0, 65520.0, -1e-8, f32::NAN, f32::NEG_INFINITY];
        let mut b = [0u8; 10];
        quantize(&src, &mut b);
        assert_eq!(
            b,
            [0xff, 0x7b, 0x00, 0x7c, 0x00, 0x80, 0x00, 0x7e, 0x00, 0xfc]
        );
    }

    #[test]
    fn vector_conversion_equals_the_scalar_one_aligned_or_not() {
        let mut vals: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.37 - 150.0) * 2f32.powi(i % 40 - 20))
            .collect();
        vals.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            65504.0,
            65520.0,
            -0.0,
            5.96e-8,
            2.98e-8,
            1.0 + 1.0 / 2048.0,
            f32::from_bits(0x7fc0_1234),
        ]);
        let want: Vec<u8> = vals
            .iter()
            .flat_map(|&x| f32_to_fp16(x).to_le_bytes())
            .collect();
        for shift in [0, 1] {
            let mut buf = vec![0u8; want.len() + 1];
            quantize(&vals, &mut buf[shift..shift + want.len()]);
            assert_eq!(&buf[shift..shift + want.len()], &want[..], "shift {shift}");
        }
    }
}

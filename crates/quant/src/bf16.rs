//! BF16: little-endian bfloat16 (the top 16 bits of an f32), 2 bytes per element, no blocks.
//!
//! Same exponent range as f32, so conversion never underflows or overflows except by rounding
//! up to infinity; ggml rounds to nearest even and forces NaN quiet (keeping its payload),
//! without flushing subnormals.

use crate::scalar::{bf16_to_f32, f32_to_bf16, le_u16};

fn at(b: &[u8], i: usize) -> f32 {
    bf16_to_f32(le_u16(b, 2 * i))
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (i, y) in dst.iter_mut().enumerate() {
        *y = at(src, i);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_bf16(x).to_le_bytes());
    }
}

/// ggml's scalar `ggml_vec_dot_bf16`: widened to f32, each product rounded to f32,
/// accumulated in f64, rounded to f32 once at the end.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (at(w, i) * at(x, i)) as f64;
    }
    sum as f32
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::BF16,
    vec_dot_type: crate::GgmlType::BF16,
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
        check_quantize_fixture("BF16", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("BF16", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar loop (f32 products, f64 sum).
        check_dot_fixture("BF16", &fixture_rows("BF16"), vec_dot, quantize, true);
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns("BF16", quantize, dequantize, vec_dot, quantize, 64);
    }

    #[test]
    fn nan_and_subnormal_like_ggml() {
        let src = [
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0x0001_8000),
            -3.0e38,
        ];
        let mut b = [0u8; 6];
        quantize(&src, &mut b);
        assert_eq!(b, [0xc0, 0x7f, 0x02, 0x00, 0x62, 0xff]);
    }
}

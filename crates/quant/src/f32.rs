//! F32: plain little-endian IEEE single floats, 4 bytes per element, no blocks.
//!
//! "Quantizing" is a byte copy; kept behind the same interface so callers treat every tensor
//! type alike.

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

/// ggml's scalar `ggml_vec_dot_f32`: each product rounded to f32, accumulated in f64, the
/// total rounded to f32 once at the end.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in w.chunks_exact(4).zip(x.chunks_exact(4)).take(n) {
        let a = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
        let b = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        sum += (a * b) as f64;
    }
    sum as f32
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::F32,
    vec_dot_type: crate::GgmlType::F32,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn to_bytes(v: &[f32]) -> Vec<u8> {
        let mut b = vec![0u8; v.len() * 4];
        quantize(v, &mut b);
        b
    }

    #[test]
    fn round_trips_source_bits() {
        for row in source_rows() {
            let mut back = vec![0f32; row.len()];
            dequantize(&to_bytes(&row), &mut back);
            assert_eq!(f32le_sha256(&back), f32le_sha256(&row));
        }
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar loop (f32 products, f64 sum).
        let weights: Vec<Vec<u8>> = source_rows().iter().map(|r| to_bytes(r)).collect();
        check_dot_fixture("F32", &weights, vec_dot, quantize, true);
    }

    #[test]
    fn test_vec_dot_f32_threshold() {
        // test-quantize-fns' test_vec_dot_f32: odd lengths too, since SIMD versions will have
        // tails to get right.
        let th = load_type_fixture("thresholds")["per_type"]["F32"]["max_vec_dot_error"]
            .as_f64()
            .unwrap() as f32;
        for n in [
            1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 193, 255, 1023,
        ] {
            let a = ggml_synthetic(n, 0.0);
            let b = ggml_synthetic(n, 1.0);
            let got = vec_dot(n, &to_bytes(&a), &to_bytes(&b));
            let err = (got - dot_f64(&a, &b)).abs() / n as f32;
            assert!(err < th, "n={n}: error {err}");
            // Same arithmetic as the reference sum, so nothing but the final rounding differs.
            assert_eq!(got, dot_f64(&a, &b), "n={n}");
        }
    }
}

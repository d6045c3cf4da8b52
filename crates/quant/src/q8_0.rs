//! Q8_0: blocks of 32 values, 34 bytes each:
//!
//! | bytes | field                          |
//! |-------|--------------------------------|
//! | 0..2  | `d`: f16 scale                 |
//! | 2..34 | `qs`: 32 × i8, element j at j  |
//!
//! Element = q * d with `d = amax / 127`, so the range is symmetric [-127, 127] (-128 unused).
//! It is both a weight format and the activation format that Q4_0, Q5_0 and Q8_0 weights are
//! dotted against.

use crate::scalar::{c_max, c_roundf, inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 34;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..BYTES]) {
            *y = q as i8 as f32 * d;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| c_max(m, v.abs()));
        let d = amax / 127.0;
        let id = inv_or_zero(d);
        put_f16(b, 0, d);
        for (q, &v) in b[2..BYTES].iter_mut().zip(x) {
            *q = c_roundf(v * id) as i8 as u8;
        }
    }
}

/// Dot with another Q8_0 row in ggml's scalar order: exact integer sum per block, then
/// `sum * (d_w * d_x)` accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / BLOCK;
    let mut sumf = 0.0f32;
    for (bw, bx) in w.chunks_exact(BYTES).zip(x.chunks_exact(BYTES)).take(nb) {
        let sumi: i32 = bw[2..BYTES]
            .iter()
            .zip(&bx[2..BYTES])
            .map(|(&a, &b)| a as i8 as i32 * b as i8 as i32)
            .sum();
        sumf += sumi as f32 * (le_f16(bw, 0) * le_f16(bx, 0));
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q8_0,
    vec_dot_type: crate::GgmlType::Q8_0,
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
        check_quantize_fixture("Q8_0", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q8_0", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar kernel.
        check_dot_fixture("Q8_0", &fixture_rows("Q8_0"), vec_dot, quantize, true);
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns("Q8_0", quantize, dequantize, vec_dot, quantize, BYTES);
    }

    #[test]
    fn edge_rows_like_ggml() {
        // ggml's f16 scale underflows for the 1e-6 row, so it all comes back zero, and the
        // constant row comes back as 127 * f16(1/127) = 0.99993896484375.
        let rows = source_rows();
        let mut q = vec![0u8; 16 * BYTES];
        let mut y = vec![0f32; 512];
        quantize(&rows[10], &mut q);
        dequantize(&q, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
        quantize(&rows[9], &mut q);
        dequantize(&q, &mut y);
        assert!(y.iter().all(|&v| v == 0.999_938_96));
    }
}

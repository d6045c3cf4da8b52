//! Q8_1: blocks of 32 values, 36 bytes each:
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 0..2  | `d`: f16 scale, `amax / 127`                           |
//! | 2..4  | `s`: f16 of `d * sum(qs)` (the integer sum, in f32)    |
//! | 4..36 | `qs`: 32 × i8, element j at j                          |
//!
//! Activation-only: it is what Q4_1 and Q5_1 weights are dotted against. Those weights carry
//! an offset `m`, and `m * sum(x)` over a block is then just `m * s`, so the kernel need not
//! sum the activations itself. ggml has no dot with Q8_1 as the weight.

use crate::scalar::{c_max, c_roundf, inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 36;

/// `d * q`, as ggml's Q8_0 dequantizer does it (ggml itself has none for Q8_1).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[4..BYTES]) {
            *y = q as i8 as f32 * d;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| c_max(m, v.abs()));
        let d = amax / 127.0;
        let id = inv_or_zero(d);
        let mut sum = 0i32;
        for (q, &v) in b[4..BYTES].iter_mut().zip(x) {
            let qi = c_roundf(v * id) as i8;
            *q = qi as u8;
            sum += qi as i32;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q8_1,
    vec_dot_type: crate::GgmlType::Q8_1,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q8_1", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q8_1", dequantize);
    }

    #[test]
    fn dot_of_dequantized_rows_matches_reference() {
        // ggml has no Q8_1 vec_dot; the fixture only gives sum(dequant(w) * x) in f64.
        let fx = load_dot_fixture("Q8_1");
        let x = dot_x();
        for (row, w) in fx["rows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(fixture_rows("Q8_1"))
        {
            let mut y = vec![0f32; 512];
            dequantize(&w, &mut y);
            let got: f64 = y.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let want = row["dequant_w_dot_x_f64"].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn block_sum_uses_unrounded_scale() {
        // q = 127 and round(-0.5 * 63.5) = -32, so s = f16(95 * d) with d = 2/127 in f32,
        // not the f16-rounded d stored beside it.
        let mut x = [0f32; BLOCK];
        x[0] = 2.0;
        x[1] = -0.5;
        let mut b = [0u8; BYTES];
        quantize(&x, &mut b);
        assert_eq!((b[4] as i8, b[5] as i8), (127, -32));
        assert!(b[6..].iter().all(|&q| q == 0));
        let d = 2.0f32 / 127.0;
        assert_eq!(crate::scalar::le_u16(&b, 0), crate::scalar::f32_to_fp16(d));
        assert_eq!(
            crate::scalar::le_u16(&b, 2),
            crate::scalar::f32_to_fp16(95.0 * d)
        );
    }
}

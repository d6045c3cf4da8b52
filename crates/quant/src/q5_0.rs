//! Q5_0: blocks of 32 weights, 22 bytes each:
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 0..2   | `d`: f16 scale                                                 |
//! | 2..6   | `qh`: u32 little-endian, bit j = 5th bit of element j          |
//! | 6..22  | `qs`: 16 bytes of low 4 bits; byte j holds element j (low      |
//! |        | nibble) and element j+16 (high nibble)                         |
//!
//! Element = (q - 16) * d with q in 0..32. The low nibbles are laid out exactly as in Q4_0 so
//! the same unpacking serves both; the fifth bits are gathered into one word beside them.
//! Scale as Q4_0: `d = max / -16` puts the largest-magnitude element on -16.

use crate::scalar::{inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 22;

#[inline]
fn qh(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[2], b[3], b[4], b[5]])
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        let qh = qh(b);
        let qs = &b[6..BYTES];
        for j in 0..BLOCK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32 - 16;
            let x1 = ((qs[j] >> 4) as u32 | h1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + BLOCK / 2] = x1 as f32 * d;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = inv_or_zero(d);
        put_f16(b, 0, d);
        let mut qh = 0u32;
        for j in 0..BLOCK / 2 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + BLOCK / 2] * id + 16.5) as i8).min(31) as u8;
            b[6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + BLOCK / 2);
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

/// Dot with a Q8_0 row in ggml's scalar order: exact integer sum per block, then
/// `(d_w * d_x) * sum` accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / BLOCK;
    let mut sumf = 0.0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_0::BYTES))
        .take(nb)
    {
        let qh = qh(bw);
        let qs = &bw[6..BYTES];
        let xq = &bx[2..crate::q8_0::BYTES];
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..BLOCK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32 - 16;
            let x1 = ((qs[j] >> 4) as u32 | h1) as i32 - 16;
            sumi0 += x0 * xq[j] as i8 as i32;
            sumi1 += x1 * xq[j + BLOCK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (le_f16(bw, 0) * le_f16(bx, 0)) * sumi as f32;
    }
    sumf
}

/// ggml's `quantize_row_q5_0_impl` with an importance matrix (`qw`: one weight per element of
/// the row).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let weight = row_weights(src, qw);
    let mut l = [0i8; BLOCK];
    for ((x, w), b) in src
        .chunks_exact(BLOCK)
        .zip(weight.chunks_exact(BLOCK))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        let d = crate::k_common::make_qx_quants(16, x, &mut l, 1, Some(w));
        put_f16(b, 0, d);
        let mut qh = 0u32;
        for j in 0..16 {
            let (x0, x1) = (l[j] as u8, l[j + 16] as u8);
            b[6 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= (((x0 & 0x10) >> 4) as u32) << j;
            qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

/// The row's `sigma2` and each block's importance weights `qw * sqrt(sigma2 + x²)`, as the
/// legacy formats' weighted quantizers compute them (over the whole row).
fn row_weights(src: &[f32], qw: &[f32]) -> Vec<f32> {
    let mut sum_x2 = 0f32;
    for &v in src {
        sum_x2 += v * v;
    }
    let sigma2 = sum_x2 / src.len() as f32;
    src.iter()
        .zip(qw)
        .map(|(&x, &q)| q * (sigma2 + x * x).sqrt())
        .collect()
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q5_0,
    vec_dot_type: crate::GgmlType::Q8_0,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_goldens(
            crate::GgmlType::Q5_0,
            [
                (0x0920_833b_2828_d5e1, 0x3436_e437_24c3_58cb),
                (0x0086_e173_9c08_fd0d, 0xa3ea_6d97_27c5_1ba9),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q5_0", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q5_0", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar kernel (the -ffp-contract=off build; the fixture's
        // other generic value comes from a miscompiled libggml-cpu and is not used).
        check_dot_fixture(
            "Q5_0",
            &fixture_rows("Q5_0"),
            vec_dot,
            crate::q8_0::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns(
            "Q5_0",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_0::quantize,
            34,
        );
    }

    #[test]
    fn fifth_bits_land_in_qh() {
        // Element 0 is the extreme (-16 -> q = 0); element 16 = +15 -> q = 31 sets qh bit 16.
        let mut x = [0f32; BLOCK];
        x[0] = 16.0;
        x[16] = -15.0;
        let mut b = [0u8; BYTES];
        quantize(&x, &mut b);
        let qh = qh(&b);
        assert_eq!(qh & 1, 0);
        assert_eq!((qh >> 16) & 1, 1);
        let mut y = [0f32; BLOCK];
        dequantize(&b, &mut y);
        assert_eq!((y[0], y[16], y[1]), (16.0, -15.0, 0.0));
    }
}

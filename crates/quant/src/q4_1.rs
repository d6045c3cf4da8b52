//! Q4_1: blocks of 32 weights, 20 bytes each:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 0..2  | `d`: f16 scale, `(max - min) / 15`                           |
//! | 2..4  | `m`: f16 offset, the block minimum                           |
//! | 4..20 | `qs`: 16 bytes; byte j holds element j in its low nibble and |
//! |       | element j+16 in its high nibble                              |
//!
//! Element = nibble * d + m: asymmetric, so a block that is all one sign uses all 16 levels.
//! The offset is why its activation partner is Q8_1, which carries `d * sum(q)` per block.

use crate::scalar::{inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 20;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        let m = le_f16(b, 2);
        let qs = &b[4..BYTES];
        for j in 0..BLOCK / 2 {
            // Separate multiply and add (no fused multiply-add), as ggml-base computes it.
            y[j] = (qs[j] & 0x0f) as f32 * d + m;
            y[j + BLOCK / 2] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = inv_or_zero(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        for j in 0..BLOCK / 2 {
            // Truncation of a non-negative value + 0.5 rounds half up, like ggml's cast.
            let lo = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let hi = (((x[j + BLOCK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            b[4 + j] = lo | (hi << 4);
        }
    }
}

/// Dot with a Q8_1 row in ggml's scalar order: exact integer sum per block, then
/// `(d_w * d_x) * sum + m_w * s_x` accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / BLOCK;
    let mut sumf = 0.0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_1::BYTES))
        .take(nb)
    {
        let qs = &bw[4..BYTES];
        let xq = &bx[4..crate::q8_1::BYTES];
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..BLOCK / 2 {
            sumi0 += (qs[j] & 0x0f) as i32 * xq[j] as i8 as i32;
            sumi1 += (qs[j] >> 4) as i32 * xq[j + BLOCK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        let scaled = (le_f16(bw, 0) * le_f16(bx, 0)) * sumi as f32;
        sumf += scaled + le_f16(bw, 2) * le_f16(bx, 2);
    }
    sumf
}

/// ggml's `quantize_row_q4_1_impl` with an importance matrix (`qw`: one weight per element of
/// the row).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let weight = row_weights(src, qw);
    let (mut l, mut laux) = ([0u8; BLOCK], [0u8; BLOCK]);
    for ((x, w), b) in src
        .chunks_exact(BLOCK)
        .zip(weight.chunks_exact(BLOCK))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        let (d, the_min) =
            crate::k_common::make_qkx3_quants(15, x, w, &mut l, &mut laux, -0.9, 0.05, 36, false);
        put_f16(b, 0, d);
        put_f16(b, 2, -the_min);
        for j in 0..16 {
            b[4 + j] = l[j] | (l[j + 16] << 4);
        }
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
    ty: crate::GgmlType::Q4_1,
    vec_dot_type: crate::GgmlType::Q8_1,
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
            crate::GgmlType::Q4_1,
            [
                (0x8599_3abb_1316_fd0a, 0x24fe_22e0_83ae_fd17),
                (0x0cd7_b76a_0112_ce65, 0xde77_f2fb_fe95_ae52),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q4_1", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q4_1", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar kernel.
        check_dot_fixture(
            "Q4_1",
            &fixture_rows("Q4_1"),
            vec_dot,
            crate::q8_1::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns(
            "Q4_1",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_1::quantize,
            36,
        );
    }

    #[test]
    fn constant_block_is_exact() {
        // max == min gives d = 0: every element is the offset itself.
        let mut b = [0u8; BYTES];
        quantize(&[0.75; BLOCK], &mut b);
        let mut y = [0f32; BLOCK];
        dequantize(&b, &mut y);
        assert!(y.iter().all(|&v| v == 0.75));
    }
}

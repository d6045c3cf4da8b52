//! Q5_1: blocks of 32 weights, 24 bytes each:
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 0..2   | `d`: f16 scale, `(max - min) / 31`                             |
//! | 2..4   | `m`: f16 offset, the block minimum                             |
//! | 4..8   | `qh`: u32 little-endian, bit j = 5th bit of element j          |
//! | 8..24  | `qs`: 16 bytes of low 4 bits; byte j holds element j (low      |
//! |        | nibble) and element j+16 (high nibble)                         |
//!
//! Element = q * d + m with q in 0..32: the 5-bit counterpart of Q4_1 (and dotted against
//! Q8_1 for the same reason), with Q5_0's split of the fifth bits.

use crate::scalar::{inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 24;

#[inline]
fn qh(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[4], b[5], b[6], b[7]])
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        let m = le_f16(b, 2);
        let qh = qh(b);
        let qs = &b[8..BYTES];
        for j in 0..BLOCK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = (qs[j] & 0x0f) as u32 | h0;
            let x1 = (qs[j] >> 4) as u32 | h1;
            // Separate multiply and add (no fused multiply-add), as ggml-base computes it.
            y[j] = x0 as f32 * d + m;
            y[j + BLOCK / 2] = x1 as f32 * d + m;
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
        let d = (max - min) / 31.0;
        let id = inv_or_zero(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let mut qh = 0u32;
        for j in 0..BLOCK / 2 {
            // ggml does not clamp to 31 here (unlike Q4_1); the top element can only reach
            // 31.5 before truncation, and bits above the fifth are masked off below anyway.
            let q0 = ((x[j] - min) * id + 0.5) as u8;
            let q1 = ((x[j + BLOCK / 2] - min) * id + 0.5) as u8;
            b[8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + BLOCK / 2);
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
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
        let qh = qh(bw);
        let qs = &bw[8..BYTES];
        let xq = &bx[4..crate::q8_1::BYTES];
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..BLOCK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32;
            let x1 = ((qs[j] >> 4) as u32 | h1) as i32;
            sumi0 += x0 * xq[j] as i8 as i32;
            sumi1 += x1 * xq[j + BLOCK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        let scaled = (le_f16(bw, 0) * le_f16(bx, 0)) * sumi as f32;
        sumf += scaled + le_f16(bw, 2) * le_f16(bx, 2);
    }
    sumf
}

/// ggml's `quantize_row_q5_1_impl` with an importance matrix (`qw`: one weight per element of
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
            crate::k_common::make_qkx3_quants(31, x, w, &mut l, &mut laux, -0.9, 0.05, 36, false);
        put_f16(b, 0, d);
        put_f16(b, 2, -the_min);
        let mut qh = 0u32;
        for j in 0..16 {
            let (x0, x1) = (l[j], l[j + 16]);
            b[8 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= (((x0 & 0x10) >> 4) as u32) << j;
            qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
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
    ty: crate::GgmlType::Q5_1,
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
            crate::GgmlType::Q5_1,
            [
                (0xbbe0_1f9a_67aa_100f, 0xeb10_33fe_c5af_20f2),
                (0x1ed2_780b_3eda_485f, 0xf47a_9d58_6ebc_aa64),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q5_1", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q5_1", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar kernel.
        check_dot_fixture(
            "Q5_1",
            &fixture_rows("Q5_1"),
            vec_dot,
            crate::q8_1::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns(
            "Q5_1",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_1::quantize,
            36,
        );
    }

    #[test]
    fn full_range_uses_all_32_levels() {
        let x: Vec<f32> = (0..BLOCK).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut b = [0u8; BYTES];
        quantize(&x, &mut b);
        assert_eq!(qh(&b), 0xffff_0000);
        let mut y = [0f32; BLOCK];
        dequantize(&b, &mut y);
        assert_eq!(y.to_vec(), x);
    }
}

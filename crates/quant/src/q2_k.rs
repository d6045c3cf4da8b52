//! Q2_K: 2-bit asymmetric quants in super-blocks of 256 = 16 sub-blocks of 16.
//!
//! Block layout, 84 bytes, little endian (ggml `block_q2_K`):
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 16   | `scales`: per sub-block, low nibble scale, high nibble min   |
//! | 16     | 64   | `qs`: 2-bit quants                                           |
//! | 80     | 2    | `d`: f16 super-block scale of the scales                     |
//! | 82     | 2    | `dmin`: f16 super-block scale of the mins                    |
//!
//! Value `e` = `d * (scales[e/16] & 15) * q - dmin * (scales[e/16] >> 4)`, with `q` in 0..4
//! stored in `qs[32 * (e / 128) + e % 32]` at bit pair `(e % 128) / 32`.

use crate::k_common::{make_qkx2_quants, nearest_int, QK_K};
use crate::q8_k;
use crate::scalar::{le_f16, put_f16};

pub const BLOCK_BYTES: usize = 84;
const QS: usize = 16;
const D: usize = 80;
const DMIN: usize = 82;

#[inline]
fn q2(b: &[u8], e: usize) -> u8 {
    (b[QS + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = le_f16(b, D);
        let min = le_f16(b, DMIN);
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let sc = b[g];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            for (k, v) in y.iter_mut().enumerate() {
                *v = dl * q2(b, 16 * g + k) as f32 - ml;
            }
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut max_scale = 0f32;
        let mut max_min = 0f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(
                3,
                xs,
                &weights,
                &mut l[16 * j..16 * j + 16],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (sc, &s) in b[..16].iter_mut().zip(&scales) {
                *sc = nearest_int(iscale * s) as u8;
            }
            put_f16(b, D, max_scale / Q4SCALE);
        } else {
            b[..16].fill(0);
            put_f16(b, D, 0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (sc, &m) in b[..16].iter_mut().zip(&mins) {
                *sc |= (nearest_int(iscale * m) << 4) as u8;
            }
            put_f16(b, DMIN, max_min / Q4SCALE);
        } else {
            put_f16(b, DMIN, 0.0);
        }
        requantize_and_pack(x, &mut l, b);
    }
}

/// ggml's `quantize_row_q2_K_impl` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let (mut l, mut laux) = ([0u8; QK_K], [0u8; 16]);
    for ((x, qw), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut sumx2 = 0f32;
        for &v in x {
            sumx2 += v * v;
        }
        let sigma2 = sumx2 / QK_K as f32;
        let (mut scales, mut mins, mut sw) = ([0f32; 16], [0f32; 16], [0f32; 16]);
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            let weight: [f32; 16] =
                std::array::from_fn(|i| qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt());
            for w in weight {
                sw[j] += w;
            }
            (scales[j], mins[j]) = crate::k_common::make_qkx3_quants(
                3,
                xs,
                &weight,
                &mut l[16 * j..16 * j + 16],
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
        }
        let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
        let dm = crate::k_common::make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = crate::k_common::make_qp_quants(15, &mins, &mut lm, &sw);
        put_f16(b, D, dm);
        put_f16(b, DMIN, mm);
        for j in 0..QK_K / 16 {
            b[j] = ls[j] | (lm[j] << 4);
        }
        requantize_and_pack(x, &mut l, b);
    }
}

/// The levels again from the stored scales and mins, then packed into `qs`.
fn requantize_and_pack(x: &[f32], l: &mut [u8; QK_K], b: &mut [u8]) {
    let (dd, dmin) = (le_f16(b, D), le_f16(b, DMIN));
    for j in 0..QK_K / 16 {
        let d = dd * (b[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (b[j] >> 4) as f32;
        for (li, &v) in l[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
            *li = nearest_int((v + dm) / d).clamp(0, 3) as u8;
        }
    }
    for half in 0..2 {
        let lh = &l[128 * half..128 * half + 128];
        for k in 0..32 {
            b[QS + 32 * half + k] =
                lh[k] | (lh[k + 32] << 2) | (lh[k + 64] << 4) | (lh[k + 96] << 6);
        }
    }
}

/// Scalar dot with Q8_K activations in ggml's generic order: exact integer sums per block,
/// then `dall * isum - dmin * summs` added to a single f32 accumulator.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / QK_K;
    let mut sumf = 0f32;
    for (wb, xb) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(q8_k::BLOCK_BYTES))
        .take(nb)
    {
        let sc = &wb[..16];
        let mut summs = 0i32;
        for (g, &s) in sc.iter().enumerate() {
            summs += q8_k::block_bsum(xb, g) as i32 * (s >> 4) as i32;
        }
        let yd = q8_k::block_d(xb);
        let dall = yd * le_f16(wb, D);
        let dmin = yd * le_f16(wb, DMIN);
        let q8 = q8_k::block_qs(xb);
        let mut isum = 0i32;
        for (g, &s) in sc.iter().enumerate() {
            let mut isuml = 0i32;
            for (k, &y) in q8.iter().enumerate().skip(16 * g).take(16) {
                isuml += y as i8 as i32 * q2(wb, k) as i32;
            }
            isum += (s & 0xF) as i32 * isuml;
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q2_K,
    vec_dot_type: crate::GgmlType::Q8_K,
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
            crate::GgmlType::Q2_K,
            [
                (0xa501_dd6b_0cd2_ce07, 0x109f_7633_9507_c985),
                (0x59c0_594a_4509_393d, 0x3c4e_f3ac_1c55_4aaa),
            ],
        );
    }
    use crate::testkit::{
        check_dequantize_fixture, check_dot_fixture, check_quantize_fixture,
        check_quantize_fns_sized, fixture_rows,
    };

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q2_K", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bit_exact() {
        check_dequantize_fixture("Q2_K", dequantize);
    }

    #[test]
    fn vec_dot_bit_exact_with_ggml_generic() {
        check_dot_fixture("Q2_K", &fixture_rows("Q2_K"), vec_dot, q8_k::quantize, true);
    }

    #[test]
    fn ggml_test_quantize_fns_thresholds() {
        let x_bytes = 4096 / QK_K * q8_k::BLOCK_BYTES;
        check_quantize_fns_sized(
            "Q2_K",
            quantize,
            dequantize,
            vec_dot,
            q8_k::quantize,
            x_bytes,
        );
    }
}

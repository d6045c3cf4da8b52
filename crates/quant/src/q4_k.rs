//! Q4_K: 4-bit asymmetric quants in super-blocks of 256 = 8 sub-blocks of 32.
//!
//! Block layout, 144 bytes, little endian (ggml `block_q4_K`):
//!
//! | offset | size | field                                                          |
//! |--------|------|----------------------------------------------------------------|
//! | 0      | 2    | `d`: f16 super-block scale of the sub-block scales             |
//! | 2      | 2    | `dmin`: f16 super-block scale of the sub-block mins            |
//! | 4      | 12   | `scales`: 8 x (6-bit scale, 6-bit min), see `get_scale_min_k4` |
//! | 16     | 128  | `qs`: 4-bit quants                                             |
//!
//! Value `i` of sub-block `j` is `d * sc[j] * q - dmin * m[j]`. The quants come in 4 chunks
//! of 64 values sharing 32 bytes: the low nibbles hold the first 32 values of the chunk (an
//! even sub-block), the high nibbles the next 32 (odd sub-block).

use crate::k_common::{
    get_scale_min_k4, nearest_int, qk_scales_mins_k4, unpack_scales_mins_k4, QK_K,
};
use crate::q8_k;
use crate::scalar::{le_f16, put_f16};

pub const BLOCK_BYTES: usize = 144;
const SCALES: usize = 4;
const QS: usize = 16;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = le_f16(b, 0);
        let min = le_f16(b, 2);
        let scales = &b[SCALES..SCALES + 12];
        for (c, (q, y)) in b[QS..]
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = get_scale_min_k4(2 * c, scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(q) {
                *l = d1 * (q & 0xF) as f32 - m1;
                *h = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let (d, dmin) = qk_scales_mins_k4(x, 15, -1.0, 20, &mut l, &mut b[SCALES..SCALES + 12]);
        put_f16(b, 0, d);
        put_f16(b, 2, dmin);
        requantize_and_pack(x, &mut l, b);
    }
}

/// ggml's `quantize_row_q4_K_impl` with an importance matrix: `qw` holds one weight per
/// element of the row (the imatrix column weights).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let (mut l, mut laux) = ([0u8; QK_K], [0u8; 32]);
    for ((x, qw), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let (d_block, m_block) = crate::k_common::weighted_scales_mins_k4(
            x,
            qw,
            15,
            &mut l,
            &mut laux,
            &mut b[SCALES..SCALES + 12],
        );
        put_f16(b, 0, d_block);
        put_f16(b, 2, m_block);
        requantize_and_pack(x, &mut l, b);
    }
}

/// The levels again from the stored (f16) scales, then packed into `qs`.
fn requantize_and_pack(x: &[f32], l: &mut [u8; QK_K], b: &mut [u8]) {
    let (d, dmin) = (le_f16(b, 0), le_f16(b, 2));
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &b[SCALES..SCALES + 12]);
        let d = d * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for (li, &v) in l[32 * j..32 * j + 32].iter_mut().zip(&x[32 * j..]) {
            *li = nearest_int((v + dm) / d).clamp(0, 15) as u8;
        }
    }
    for (c, q) in b[QS..].chunks_exact_mut(32).enumerate() {
        for (k, q) in q.iter_mut().enumerate() {
            *q = l[64 * c + k] | (l[64 * c + k + 32] << 4);
        }
    }
}

/// Scalar dot with Q8_K activations in ggml's generic order: exact integer sums per lane
/// (element index mod 8), one f32 multiply-add per lane and block, lanes added at the end
/// after the min corrections.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / QK_K;
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (wb, xb) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(q8_k::BLOCK_BYTES))
        .take(nb)
    {
        let (sc, mn) = unpack_scales_mins_k4(&wb[SCALES..SCALES + 12]);
        let mut sumi = 0i32;
        for g in 0..QK_K / 16 {
            sumi += q8_k::block_bsum(xb, g) as i32 * mn[g / 2] as i32;
        }
        let q8 = q8_k::block_qs(xb);
        let mut aux32 = [0i32; 8];
        for (c, q4) in wb[QS..].chunks_exact(32).enumerate() {
            for half in 0..2 {
                let sub = 2 * c + half;
                let scale = sc[sub] as i32;
                let shift = 4 * half;
                let q8s = &q8[32 * sub..32 * sub + 32];
                for (k, (&q, &y)) in q4.iter().zip(q8s).enumerate() {
                    let a = ((q >> shift) & 0xF) as i32;
                    aux32[k % 8] += scale * (y as i8 as i32 * a);
                }
            }
        }
        let yd = q8_k::block_d(xb);
        let d = le_f16(wb, 0) * yd;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        let dmin = le_f16(wb, 2) * yd;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q4_K,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: Some(quantize_weighted),
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// With an importance matrix: ggml's bytes (`GGML_QW=1 matmul_hash q4_k K M 1 plain 1
    /// detail`).
    #[test]
    fn quantize_weighted_equals_ggml() {
        crate::testkit::check_weighted_hashes(
            crate::GgmlType::Q4_K,
            (512, 32),
            0x8ca4_d324_c50c_d3f6,
            0xb275_0023_2590_9c05,
        );
        crate::testkit::check_weighted_hashes(
            crate::GgmlType::Q4_K,
            (4096, 8),
            0x1dfb_8938_ecf6_b5c6,
            0x25b9_c752_72aa_6bae,
        );
    }
    use crate::testkit::{
        check_dequantize_fixture, check_dot_fixture, check_quantize_fixture,
        check_quantize_fns_sized, fixture_rows,
    };

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q4_K", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bit_exact() {
        check_dequantize_fixture("Q4_K", dequantize);
    }

    #[test]
    fn vec_dot_bit_exact_with_ggml_generic() {
        check_dot_fixture("Q4_K", &fixture_rows("Q4_K"), vec_dot, q8_k::quantize, true);
    }

    #[test]
    fn ggml_test_quantize_fns_thresholds() {
        let x_bytes = 4096 / QK_K * q8_k::BLOCK_BYTES;
        check_quantize_fns_sized(
            "Q4_K",
            quantize,
            dequantize,
            vec_dot,
            q8_k::quantize,
            x_bytes,
        );
    }
}

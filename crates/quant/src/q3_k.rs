//! Q3_K: 3-bit symmetric quants in super-blocks of 256 = 16 sub-blocks of 16.
//!
//! Block layout, 110 bytes, little endian (ggml `block_q3_K`):
//!
//! | offset | size | field                                                     |
//! |--------|------|-----------------------------------------------------------|
//! | 0      | 32   | `hmask`: high bit of each quant                           |
//! | 32     | 64   | `qs`: low 2 bits of each quant                            |
//! | 96     | 12   | `scales`: 16 x 6-bit scales, stored +32                   |
//! | 108    | 2    | `d`: f16 super-block scale                                |
//!
//! Value `e` = `d * (s[e / 16] - 32) * (low2 + 4 * high - 4)`. The high bit of element `e` is
//! bit `e / 32` of `hmask[e % 32]`; the low 2 bits live in `qs[32 * (e / 128) + e % 32]` at
//! bit pair `(e % 128) / 32`. Scale `j` keeps its low nibble in byte `j` (j < 8) or the high
//! nibble of byte `j - 8`, and its top 2 bits in byte `8 + j % 4` at bit pair `j / 4`.

use crate::k_common::{make_q3_quants, make_qx_quants, nearest_int, QK_K};
use crate::q8_k;
use crate::scalar::{le_f16, put_f16};

pub const BLOCK_BYTES: usize = 110;
const QS: usize = 32;
const SCALES: usize = 96;
const D: usize = 108;

/// The 16 scales of one block, with the +32 storage offset removed.
#[inline]
pub(crate) fn unpack_scales(sc: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
        let hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (lo | (hi << 4)) as i8 - 32;
    }
    out
}

/// The signed quant (-4..4) of element `e` of block `b`.
#[inline]
fn q3(b: &[u8], e: usize) -> i8 {
    let low = (b[QS + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    let high = b[e % 32] & (1 << (e / 32)) != 0;
    low as i8 - if high { 0 } else { 4 }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d_all = le_f16(b, D);
        let scales = unpack_scales(&b[SCALES..SCALES + 12]);
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = d_all * scales[g] as f32;
            for (k, v) in y.iter_mut().enumerate() {
                *v = dl * q3(b, 16 * g + k) as f32;
            }
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut max_scale = 0f32;
        let mut amax = 0f32;
        for (j, s) in scales.iter_mut().enumerate() {
            let r = 16 * j..16 * j + 16;
            *s = make_q3_quants(4, &x[r.clone()], &mut l[r], true);
            if s.abs() > amax {
                amax = s.abs();
                max_scale = *s;
            }
        }
        let sc = &mut b[SCALES..SCALES + 12];
        sc.fill(0);
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // ggml keeps nearest_int in an int8_t before clamping.
                let v = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    sc[j] = v & 0xF;
                } else {
                    sc[j - 8] |= (v & 0xF) << 4;
                }
                sc[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
            }
            put_f16(b, D, 1.0 / iscale);
        } else {
            put_f16(b, D, 0.0);
        }
        requantize_and_pack(x, &mut l, b);
    }
}

/// ggml's `quantize_row_q3_K_impl` with an importance matrix (`qw`: one weight per element):
/// weighted least squares for the groups' levels, then for the 16 group scales themselves.
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let mut l = [0i8; QK_K];
    for ((x, qw), b) in src
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut sumx2 = 0f32;
        for &v in x {
            sumx2 += v * v;
        }
        let sigma2 = 2.0 * sumx2 / QK_K as f32;
        let (mut scales, mut sw) = ([0f32; QK_K / 16], [0f32; QK_K / 16]);
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            let weight: [f32; 16] =
                std::array::from_fn(|i| qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt());
            let mut sumw = 0f32;
            for w in weight {
                sumw += w;
            }
            sw[j] = sumw;
            scales[j] = make_qx_quants(4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
        }
        let sc = &mut b[SCALES..SCALES + 12];
        sc.fill(0);
        let mut ls = [0i8; QK_K / 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
        for (j, &v) in ls.iter().enumerate() {
            let v = v as u8;
            if j < 8 {
                sc[j] = v & 0xF;
            } else {
                sc[j - 8] |= (v & 0xF) << 4;
            }
            sc[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
        put_f16(b, D, d_block);
        requantize_and_pack(x, &mut l, b);
    }
}

/// The levels again from the stored scales, then the high bits into `hmask` and the low two
/// into `qs`.
fn requantize_and_pack(x: &[f32], l: &mut [i8; QK_K], b: &mut [u8]) {
    let d_all = le_f16(b, D);
    let sc = unpack_scales(&b[SCALES..SCALES + 12]);
    for j in 0..QK_K / 16 {
        let d = d_all * sc[j] as f32;
        if d == 0.0 {
            continue;
        }
        for (li, &v) in l[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
            *li = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
        }
    }
    b[..QS].fill(0);
    for (e, li) in l.iter_mut().enumerate() {
        if *li > 3 {
            b[e % 32] |= 1 << (e / 32);
            *li -= 4;
        }
    }
    for half in 0..2 {
        let lh = &l[128 * half..128 * half + 128];
        for k in 0..32 {
            let q = [lh[k], lh[k + 32], lh[k + 64], lh[k + 96]].map(|v| v as u8);
            b[QS + 32 * half + k] = q[0] | (q[1] << 2) | (q[2] << 4) | (q[3] << 6);
        }
    }
}

/// Scalar dot with Q8_K activations in ggml's generic order (exact integer lane sums per
/// block, one f32 multiply-add per lane and block, lanes summed at the end).
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / QK_K;
    let mut sums = [0f32; 8];
    for (wb, xb) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(q8_k::BLOCK_BYTES))
        .take(nb)
    {
        let scales = unpack_scales(&wb[SCALES..SCALES + 12]);
        let q8 = q8_k::block_qs(xb);
        let mut aux32 = [0i32; 8];
        for (e, &y) in q8.iter().enumerate() {
            let a = q3(wb, e) as i32;
            aux32[e % 8] += scales[e / 16] as i32 * (y as i8 as i32 * a);
        }
        let d = le_f16(wb, D) * q8_k::block_d(xb);
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::Q3_K,
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
            crate::GgmlType::Q3_K,
            [
                (0x4c10_df5b_4d21_5405, 0x7c65_452f_6ac0_3a12),
                (0xed4f_cefd_17fa_31d9, 0x755a_2a7a_a23a_0eb0),
            ],
        );
    }
    use crate::testkit::{
        check_dequantize_fixture, check_dot_fixture, check_quantize_fixture,
        check_quantize_fns_sized, fixture_rows,
    };

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q3_K", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bit_exact() {
        check_dequantize_fixture("Q3_K", dequantize);
    }

    #[test]
    fn vec_dot_bit_exact_with_ggml_generic() {
        check_dot_fixture("Q3_K", &fixture_rows("Q3_K"), vec_dot, q8_k::quantize, true);
    }

    #[test]
    fn ggml_test_quantize_fns_thresholds() {
        let x_bytes = 4096 / QK_K * q8_k::BLOCK_BYTES;
        check_quantize_fns_sized(
            "Q3_K",
            quantize,
            dequantize,
            vec_dot,
            q8_k::quantize,
            x_bytes,
        );
    }
}

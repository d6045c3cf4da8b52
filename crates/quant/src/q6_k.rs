//! Q6_K: 6-bit symmetric quants in super-blocks of 256 = 16 sub-blocks of 16.
//!
//! Block layout, 210 bytes, little endian (ggml `block_q6_K`):
//!
//! | offset | size | field                                          |
//! |--------|------|------------------------------------------------|
//! | 0      | 128  | `ql`: low 4 bits of the quants                 |
//! | 128    | 64   | `qh`: high 2 bits of the quants                |
//! | 192    | 16   | `scales`: i8 scale per sub-block of 16         |
//! | 208    | 2    | `d`: f16 super-block scale                     |
//!
//! Value = `d * scales[e / 16] * (q - 32)` with `q` in 0..64. Each half of 128 values uses 64
//! bytes of `ql` and 32 of `qh`: for `l` in 0..32, `ql[l]` holds values `l` (low nibble) and
//! `l + 64` (high nibble), `ql[l + 32]` holds `l + 32` and `l + 96`, and `qh[l]` the high bits
//! of `l`, `l + 32`, `l + 64`, `l + 96` in bit pairs 0, 2, 4, 6.

use crate::k_common::{make_qx_quants, nearest_int, GROUP_MAX_EPS, QK_K};
use crate::q8_k;
use crate::scalar::{le_f16, put_f16};

pub const BLOCK_BYTES: usize = 210;
const QH: usize = 128;
const SCALES: usize = 192;
const D: usize = 208;

/// The 6-bit quant (0..64) of element `e` (0..256) of block `b`.
#[inline]
fn q6(b: &[u8], e: usize) -> u8 {
    let (half, i) = (e / 128, e % 128);
    let (quarter, l) = (i / 32, i % 32);
    let ql = b[64 * half + l + 32 * (quarter & 1)];
    let lo = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let hi = (b[QH + 32 * half + l] >> (2 * quarter)) & 3;
    lo | (hi << 4)
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = le_f16(b, D);
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[SCALES + e / 16] as i8;
            let q = q6(b, e) as i8 - 32;
            *v = d * sc as f32 * q as f32;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    quantize_impl(src, None, dst)
}

/// ggml's `quantize_row_q6_K_impl` with an importance matrix: the column weights go straight
/// into each group's least-squares fit (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    quantize_impl(src, Some(qw), dst)
}

fn quantize_impl(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (i, (x, b)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
        .enumerate()
    {
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        for (ib, s) in scales.iter_mut().enumerate() {
            let r = 16 * ib..16 * ib + 16;
            let w = qw.map(|q| &q[QK_K * i + 16 * ib..QK_K * i + 16 * ib + 16]);
            *s = make_qx_quants(32, &x[r.clone()], &mut l[r], 1, w);
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = *s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            b.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        put_f16(b, D, 1.0 / iscale);
        for (ib, &s) in scales.iter().enumerate() {
            // ggml narrows the int to int8_t: keep the wrap.
            b[SCALES + ib] = nearest_int(iscale * s).min(127) as i8 as u8;
        }
        let dd = le_f16(b, D);
        for j in 0..QK_K / 16 {
            let d = dd * b[SCALES + j] as i8 as f32;
            if d == 0.0 {
                continue;
            }
            for (li, &v) in l[16 * j..16 * j + 16].iter_mut().zip(&x[16 * j..]) {
                *li = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for half in 0..2 {
            let lh = &l[128 * half..128 * half + 128];
            for k in 0..32 {
                let q = [lh[k], lh[k + 32], lh[k + 64], lh[k + 96]].map(|v| v as u8);
                b[64 * half + k] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                b[64 * half + k + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                b[QH + 32 * half + k] =
                    (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
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
        let q8 = q8_k::block_qs(xb);
        let mut aux32 = [0i32; 8];
        for (e, &y) in q8.iter().enumerate() {
            let scale = wb[SCALES + e / 16] as i8 as i32;
            let a = q6(wb, e) as i32 - 32;
            aux32[e % 8] += scale * (y as i8 as i32 * a);
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
    ty: crate::GgmlType::Q6_K,
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
            crate::GgmlType::Q6_K,
            [
                (0x00db_f4d2_3502_cf48, 0x743e_aadf_059e_3948),
                (0x66a7_aeea_1248_86dc, 0x8f51_6e86_5fad_c8f6),
            ],
        );
    }
    use crate::testkit::{
        check_dequantize_fixture, check_dot_fixture, check_quantize_fixture,
        check_quantize_fns_sized, fixture_rows,
    };

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q6_K", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bit_exact() {
        check_dequantize_fixture("Q6_K", dequantize);
    }

    #[test]
    fn vec_dot_bit_exact_with_ggml_generic() {
        check_dot_fixture("Q6_K", &fixture_rows("Q6_K"), vec_dot, q8_k::quantize, true);
    }

    #[test]
    fn ggml_test_quantize_fns_thresholds() {
        let x_bytes = 4096 / QK_K * q8_k::BLOCK_BYTES;
        check_quantize_fns_sized(
            "Q6_K",
            quantize,
            dequantize,
            vec_dot,
            q8_k::quantize,
            x_bytes,
        );
    }
}

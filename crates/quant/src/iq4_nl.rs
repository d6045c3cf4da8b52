//! IQ4_NL: blocks of 32 weights, 18 bytes each, on a non-linear 4-bit grid:
//!
//! | bytes | field                                                              |
//! |-------|--------------------------------------------------------------------|
//! | 0..2  | `d`: f16 scale                                                     |
//! | 2..18 | `qs`: byte j holds the code of element j (low nibble) and j+16     |
//!
//! Element = `d * KVALUES[code]`. The 16 grid values are spaced more densely near zero than
//! at the ends, which fits the bell-shaped distribution of weights better than Q4_0's even
//! steps at the same size. The search for the scale is shared with IQ4_XS
//! (`quantize_superblock`).

use crate::k_common::{nearest_int, GROUP_MAX_EPS};
use crate::scalar::le_f16;

pub const BLOCK: usize = 32;
pub const BYTES: usize = 18;

/// ggml's `kvalues_iq4nl`: the value of each 4-bit code, before the scale.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// How many scales on each side of the first guess the quantizer tries, as
/// `ggml_quantize_chunk` (what llama-quantize calls) does. ggml's row quantizer
/// (`quantize_row_iq4_nl_ref`, [`quantize_row_ref`]) uses -1: no search.
pub(crate) const NTRY: i32 = 7;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        for j in 0..BLOCK / 2 {
            y[j] = d * KVALUES[(b[2 + j] & 0x0f) as usize] as f32;
            y[j + BLOCK / 2] = d * KVALUES[(b[2 + j] >> 4) as usize] as f32;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let (d, qs) = b.split_at_mut(2);
        let mut scales_h = [0u8; 2];
        let d_bits = quantize_superblock(x, qs, &mut scales_h, &mut [], NTRY, None);
        d.copy_from_slice(&d_bits.to_le_bytes());
    }
}

/// ggml's `quantize_iq4_nl` with an importance matrix (`qw`: one weight per element).
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, w), b) in src
        .chunks_exact(BLOCK)
        .zip(qw.chunks_exact(BLOCK))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        let (d, qs) = b.split_at_mut(2);
        let mut scales_h = [0u8; 2];
        let d_bits = quantize_superblock(x, qs, &mut scales_h, &mut [], NTRY, Some(w));
        d.copy_from_slice(&d_bits.to_le_bytes());
    }
}

/// ggml's `quantize_row_iq4_nl_ref` (the type's `from_float`, which test-quantize-fns
/// measures): the first scale guess, refitted once, without [`quantize`]'s search. Files
/// are made with [`quantize`].
pub fn quantize_row_ref(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        let (d, qs) = b.split_at_mut(2);
        let mut scales_h = [0u8; 2];
        let d_bits = quantize_superblock(x, qs, &mut scales_h, &mut [], -1, None);
        d.copy_from_slice(&d_bits.to_le_bytes());
    }
}

/// ggml's `best_index_int8`: the grid index nearest to `x` (the upper one on a tie).
fn best_index(x: f32) -> usize {
    let v = |i: usize| KVALUES[i] as f32;
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        mu - 1
    } else {
        mu
    }
}

/// ggml's `quantize_row_iq4_nl_impl` without an importance matrix (weights `x²`), trying
/// `ntry` scales each side of the first guess ([`NTRY`], or -1 for none): `x` is one super-block of 32 (IQ4_NL) or 256 (IQ4_XS) values in groups of 32.
/// Writes the packed codes to `q4` (`x.len() / 2` bytes) and, for several groups, the 6-bit
/// group scales to `scales_h` (2 bytes, little endian u16) and `scales_l` (`groups / 2`
/// bytes); returns the f16 bits of the super-block scale. Every float expression keeps the C
/// operand order (ggml-base is built without FMA).
pub(crate) fn quantize_superblock(
    x: &[f32],
    q4: &mut [u8],
    scales_h: &mut [u8; 2],
    scales_l: &mut [u8],
    ntry: i32,
    qw: Option<&[f32]>,
) -> u16 {
    let groups = x.len() / 32;
    let mut sigma2 = 0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / x.len() as f32;
    let mut l = [0u8; 256];
    let mut scales = [0f32; 8];
    let mut weight = [0f32; 32];
    let mut max_scale = 0f32;
    let mut amax_scale = 0f32;
    let dh;
    for ib in 0..groups {
        let xb = &x[ib * 32..ib * 32 + 32];
        let lb = &mut l[ib * 32..ib * 32 + 32];
        match qw {
            Some(q) => {
                for ((w, &v), &q) in weight.iter_mut().zip(xb).zip(&q[ib * 32..ib * 32 + 32]) {
                    *w = q * (sigma2 + v * v).sqrt();
                }
            }
            None => {
                for (w, &v) in weight.iter_mut().zip(xb) {
                    *w = v * v;
                }
            }
        }
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = if ntry > 0 {
            -max / KVALUES[0] as f32
        } else {
            max / KVALUES[0] as f32
        };
        let mut id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for j in 0..32 {
            let li = best_index(id * xb[j]);
            lb[j] = li as u8;
            let q = KVALUES[li] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            id = (itry as f32 + KVALUES[0] as f32) / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..32 {
                let q = KVALUES[best_index(id * xb[j])] as f32;
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    if groups > 1 {
        let mut sh = 0u16;
        scales_l[..groups / 2].fill(0);
        let d = -max_scale / 32.0;
        dh = crate::scalar::f32_to_fp16(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..groups {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                l[ib * 32 + j] = best_index(idl * x[ib * 32 + j]) as u8;
            }
            let ls = (ls + 32) as u8;
            if ib % 2 == 0 {
                scales_l[ib / 2] = ls & 0x0f;
            } else {
                scales_l[ib / 2] |= (ls & 0x0f) << 4;
            }
            sh |= ((ls >> 4) as u16) << (2 * (ib % 8));
        }
        *scales_h = sh.to_le_bytes();
    } else {
        dh = crate::scalar::f32_to_fp16(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 {
                1.0 / scales[0]
            } else {
                0.0
            };
            for j in 0..32 {
                l[j] = best_index(id * x[j]) as u8;
            }
        }
    }
    for i in 0..groups {
        for j in 0..16 {
            q4[16 * i + j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
        }
    }
    dh
}

/// The integer dot of one 32-block's codes (16 bytes) with 32 i8 activations.
#[inline]
pub(crate) fn block_sum(qs: &[u8], xq: &[u8]) -> (i32, i32) {
    let (mut lo, mut hi) = (0i32, 0i32);
    for j in 0..16 {
        lo += xq[j] as i8 as i32 * KVALUES[(qs[j] & 0x0f) as usize] as i32;
        hi += xq[j + 16] as i8 as i32 * KVALUES[(qs[j] >> 4) as usize] as i32;
    }
    (lo, hi)
}

/// Dot with a Q8_0 row in ggml's scalar order (no FMA): per block the exact integer sum
/// times `d_x * d_w`, accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_0::BYTES))
        .take(n / BLOCK)
    {
        let d = le_f16(bx, 0) * le_f16(bw, 0);
        let (lo, hi) = block_sum(&bw[2..], &bx[2..]);
        sumf += d * (lo + hi) as f32;
    }
    sumf
}

/// Dot with a Q8_0 row in the order of llama.cpp's repacked IQ4_NL matmul (`iq4_nl_8x8`,
/// which its x86 build uses for every IQ4_NL matrix with a multiple of 8 rows when AVX2 is
/// present, gemv and gemm alike): one accumulator, each block's exact integer sum added by a
/// fused multiply-add with `d_w * d_x`.
pub fn vec_dot_repacked(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_0::BYTES))
        .take(n / BLOCK)
    {
        let (lo, hi) = block_sum(&bw[2..], &bx[2..]);
        acc = ((lo + hi) as f32).mul_add(le_f16(bw, 0) * le_f16(bx, 0), acc);
    }
    acc
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::IQ4_NL,
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
            crate::GgmlType::IQ4_NL,
            [
                (0x02b3_6c6f_1602_7ed5, 0xe134_ce8d_7daa_3c33),
                (0x1b7d_7421_28c1_acda, 0xa89e_23e4_20fc_86d5),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("IQ4_NL", quantize);
    }

    #[test]
    fn row_quantizer_matches_ggml_from_float_bytes() {
        let fx = load_type_fixture("IQ4_NL");
        let rows: Vec<Vec<u8>> = fx["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["rows_hex_from_float_ref"].as_array().unwrap().clone())
            .map(|h| hex(h.as_str().unwrap()))
            .collect();
        assert_eq!(rows.len(), 12);
        for (i, (src, want)) in source_rows().iter().zip(&rows).enumerate() {
            let mut got = vec![0u8; want.len()];
            quantize_row_ref(src, &mut got);
            for (b, (g, w)) in got.chunks(BYTES).zip(want.chunks(BYTES)).enumerate() {
                // An all-zero block gets scale 0 and, in C, the codes left in an
                // uninitialised array: only the scale is comparable there.
                let n = if w[..2] == [0, 0] { 2 } else { BYTES };
                assert_eq!(
                    g[..n],
                    w[..n],
                    "row {i} block {b} differs from ggml's from_float"
                );
            }
        }
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("IQ4_NL", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        check_dot_fixture(
            "IQ4_NL",
            &fixture_rows("IQ4_NL"),
            vec_dot,
            crate::q8_0::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        // ggml measures its row quantizer, which does not search, against itself.
        check_quantize_fns_against(
            "IQ4_NL",
            (quantize_row_ref, &quantize_row_ref),
            dequantize,
            vec_dot,
            crate::q8_0::quantize,
            4096 / 32 * crate::q8_0::BYTES,
        );
    }

    #[test]
    fn best_index_takes_the_nearest_value_and_the_upper_on_ties() {
        assert_eq!(best_index(-500.0), 0);
        assert_eq!(best_index(500.0), 15);
        assert_eq!(best_index(0.0), 8); // 1 is nearer than -10
        assert_eq!(best_index(-4.5), 8); // exactly between -10 and 1: the upper one
        assert_eq!(best_index(7.0), 9); // exactly between 1 and 13: the upper one
        assert_eq!(best_index(6.9), 8);
    }
}

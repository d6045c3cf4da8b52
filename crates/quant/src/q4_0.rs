//! Q4_0: blocks of 32 weights, 18 bytes each:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 0..2  | `d`: f16 scale                                               |
//! | 2..18 | `qs`: 16 bytes; byte j holds element j in its low nibble and |
//! |       | element j+16 in its high nibble                              |
//!
//! Element = (nibble - 8) * d. Symmetric, no offset. The scale is chosen from the element of
//! largest magnitude, `d = max / -8`, so that element lands exactly on -8, the one end of the
//! asymmetric range [-8, 7] that is representable; the sign flip keeps it there whatever its
//! sign. Splitting the block into halves per nibble (rather than interleaving pairs) lets a SIMD
//! kernel unpack 32 values with one mask and one shift.

use crate::scalar::{inv_or_zero, le_f16, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 18;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(BLOCK)) {
        let d = le_f16(b, 0);
        let qs = &b[2..BYTES];
        for j in 0..BLOCK / 2 {
            y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + BLOCK / 2] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        // The signed value of largest magnitude; the first one wins a tie.
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = inv_or_zero(d);
        put_f16(b, 0, d);
        for j in 0..BLOCK / 2 {
            // `as i8` truncates toward zero like ggml's (int8_t) cast; the +8.5 makes it round.
            let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let hi = ((x[j + BLOCK / 2] * id + 8.5) as i8).min(15) as u8;
            b[2 + j] = lo | (hi << 4);
        }
    }
}

/// Dot with a Q8_0 row, in ggml's scalar order: exact integer sum per block, then
/// `sum * d_w * d_x` accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / BLOCK;
    let mut sumf = 0.0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_0::BYTES))
        .take(nb)
    {
        let qs = &bw[2..BYTES];
        let xq = &bx[2..crate::q8_0::BYTES];
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..BLOCK / 2 {
            let v0 = (qs[j] & 0x0f) as i32 - 8;
            let v1 = (qs[j] >> 4) as i32 - 8;
            sumi0 += v0 * xq[j] as i8 as i32;
            sumi1 += v1 * xq[j + BLOCK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * le_f16(bw, 0) * le_f16(bx, 0);
    }
    sumf
}

/// Dot with a Q8_0 row in the order of llama.cpp's repacked Q4_0 matmul (`q4_0_8x8` gemv
/// and gemm, which its x86 build uses for every Q4_0 matrix with a multiple of 8 rows when
/// AVX2 is present): one accumulator, each block's exact integer sum added by a fused
/// multiply-add with `d_w * d_x`.
pub fn vec_dot_repacked(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / BLOCK;
    let mut acc = 0.0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_0::BYTES))
        .take(nb)
    {
        let qs = &bw[2..BYTES];
        let xq = &bx[2..crate::q8_0::BYTES];
        let mut sumi = 0i32;
        for j in 0..BLOCK / 2 {
            sumi += ((qs[j] & 0x0f) as i32 - 8) * xq[j] as i8 as i32;
            sumi += ((qs[j] >> 4) as i32 - 8) * xq[j + BLOCK / 2] as i8 as i32;
        }
        acc = (sumi as f32).mul_add(le_f16(bw, 0) * le_f16(bx, 0), acc);
    }
    acc
}

/// ggml's `quantize_row_q4_0_impl` with an importance matrix (`qw`: one weight per element of
/// the row): weighted least squares per block.
pub fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let weight = row_weights(src, qw);
    let mut l = [0i8; BLOCK];
    for ((x, w), b) in src
        .chunks_exact(BLOCK)
        .zip(weight.chunks_exact(BLOCK))
        .zip(dst.chunks_exact_mut(BYTES))
    {
        let d = crate::k_common::make_qx_quants(8, x, &mut l, 1, Some(w));
        put_f16(b, 0, d);
        for j in 0..16 {
            b[2 + j] = l[j] as u8 | ((l[j + 16] as u8) << 4);
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
    ty: crate::GgmlType::Q4_0,
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
            crate::GgmlType::Q4_0,
            [
                (0x8bbc_dc5e_65fe_c7b7, 0xf0af_45ee_4ce8_d577),
                (0x6b4e_6dd1_1bc9_c673, 0x2444_f8ec_5f13_4553),
            ],
        );
    }
    use crate::testkit::*;

    #[test]
    fn quantize_matches_ggml_bytes() {
        check_quantize_fixture("Q4_0", quantize);
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        check_dequantize_fixture("Q4_0", dequantize);
    }

    #[test]
    fn vec_dot_matches_ggml() {
        // Bit-exact against ggml's scalar kernel.
        check_dot_fixture(
            "Q4_0",
            &fixture_rows("Q4_0"),
            vec_dot,
            crate::q8_0::quantize,
            true,
        );
    }

    #[test]
    fn test_quantize_fns_thresholds() {
        check_quantize_fns(
            "Q4_0",
            quantize,
            dequantize,
            vec_dot,
            crate::q8_0::quantize,
            34,
        );
    }

    #[test]
    fn all_zero_block_keeps_negative_zero_scale() {
        // max = 0 gives d = 0 / -8 = -0.0, which ggml stores as f16 0x8000.
        let mut b = [0xffu8; BYTES];
        quantize(&[0.0; BLOCK], &mut b);
        assert_eq!(&b[..2], &[0x00, 0x80]);
        assert!(b[2..].iter().all(|&q| q == 0x88));
    }
}

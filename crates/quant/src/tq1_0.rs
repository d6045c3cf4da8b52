//! TQ1_0: ternary weights (-1, 0, +1 times a scale) packed 5 per byte in base 3 (1.6875 bits
//! per weight): super-blocks of 256 values, 54 bytes:
//!
//! | bytes  | field                                                                    |
//! |--------|--------------------------------------------------------------------------|
//! | 0..32  | 5 trits per byte: byte m, trit n is element n*32 + m (elements 0..160)   |
//! | 32..48 | 5 trits per byte: byte m, trit n is element 160 + n*16 + m (..240)       |
//! | 48..52 | `qh`: 4 trits per byte: byte j, trit n is element 240 + n*4 + j          |
//! | 52..54 | `d`: f16 scale (the block's largest magnitude)                           |
//!
//! A byte holds its trits as a fixed-point fraction `ceil(t * 256 / 243)` with `t` the
//! base-3 number, most significant trit first, so trit n is the top two bits of
//! `(byte * 3^n mod 256) * 3`.

use crate::k_common::QK_K;
use crate::q8_k::{block_d, block_qs};
use crate::scalar::{le_f16, put_f16};

pub const BYTES: usize = 54;
const QH: usize = 48;
const D: usize = 52;
const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// Trit `n` (0, 1, 2) of a packed byte.
#[inline]
fn trit(byte: u8, n: usize) -> u8 {
    ((byte.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8
}

/// The code (0, 1, 2 for -1, 0, +1) of element `e` of a block.
#[inline]
pub(crate) fn code(b: &[u8], e: usize) -> u8 {
    match e {
        0..160 => trit(b[e % 32], e / 32),
        160..240 => trit(b[32 + (e - 160) % 16], (e - 160) / 16),
        _ => trit(b[QH + (e - 240) % 4], (e - 240) / 4),
    }
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = le_f16(b, D);
        for (e, v) in y.iter_mut().enumerate() {
            *v = (code(b, e) as i32 - 1) as f32 * d;
        }
    }
}

/// Packs `trits` (most significant first) into one byte as ggml does.
fn pack(trits: impl Iterator<Item = u8>, extra_shift: bool) -> u8 {
    let mut q = 0u8;
    for t in trits {
        q = q.wrapping_mul(3).wrapping_add(t);
    }
    if extra_shift {
        q = q.wrapping_mul(3);
    }
    // ggml's ceiling division by 243 (= 3^5).
    (q as u16 * 256).div_ceil(243) as u8
}

/// ggml's `quantize_row_tq1_0_ref`: scale = largest magnitude, each value rounded to -1/0/+1
/// of it (half away from zero), packed as in the module comment.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BYTES)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 1.0 / amax } else { 0.0 };
        put_f16(b, D, amax);
        let t = |e: usize| ((x[e] * id).round() as i32 + 1) as u8;
        for (m, q) in b[..32].iter_mut().enumerate() {
            *q = pack((0..5).map(|n| t(n * 32 + m)), false);
        }
        for (m, q) in b[32..QH].iter_mut().enumerate() {
            *q = pack((0..5).map(|n| t(160 + n * 16 + m)), false);
        }
        for (j, q) in b[QH..D].iter_mut().enumerate() {
            *q = pack((0..4).map(|n| t(240 + n * 4 + j)), true);
        }
    }
}

/// The 8 integer lanes ggml's AVX2 ternary kernels form for one block, given each element's
/// code: lane k adds `code * x` over the elements at offsets 4k..4k+4 of every 32-element
/// chunk (where the byte products land in the 256-bit registers), and takes away the sum of
/// the activations 32k..32k+32 (the `bsums` that turn codes 0..2 into -1..1). Their total is
/// the exact dot.
#[cfg(test)]
pub(crate) fn lanes_of(code: impl Fn(usize) -> u8, bx: &[u8]) -> [i32; 8] {
    let qs = block_qs(bx);
    let mut lanes = [0i32; 8];
    for e in 0..QK_K {
        lanes[(e % 32) / 4] += code(e) as i32 * qs[e] as i8 as i32;
    }
    for (k, l) in lanes.iter_mut().enumerate() {
        use crate::q8_k::block_bsum;
        *l -= block_bsum(bx, 2 * k) as i32 + block_bsum(bx, 2 * k + 1) as i32;
    }
    lanes
}

/// [`lanes_of`] for TQ1_0.
#[cfg(test)]
pub(crate) fn lane_sums(bw: &[u8], bx: &[u8]) -> [i32; 8] {
    lanes_of(|e| code(bw, e), bx)
}

/// Dot with a Q8_K row in ggml's scalar order (no FMA): per block the exact integer sum
/// times `d_w * d_x`, accumulated in f32.
pub fn vec_dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in w
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
    {
        let qs = block_qs(bx);
        let sum: i32 = (0..QK_K)
            .map(|e| (code(bw, e) as i32 - 1) * qs[e] as i8 as i32)
            .sum();
        sumf += sum as f32 * (le_f16(bw, D) * block_d(bx));
    }
    sumf
}

/// This format's entry in [`crate::formats::FORMATS`].
pub const FORMAT: crate::format::Format = crate::format::Format {
    ty: crate::GgmlType::TQ1_0,
    vec_dot_type: crate::GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    quantize_weighted: None,
    vec_dot: Some(vec_dot),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::check_format_hashes;

    #[test]
    /// Hashes from scripts/quant-goldens: `matmul_hash tq1_0 512 32 1 plain 1 detail`.
    fn quantize_and_dequantize_equal_ggml() {
        check_format_hashes(
            crate::GgmlType::TQ1_0,
            (512, 32),
            0xe71c_03e8_7741_1260,
            0xc2ff_3549_184c_6122,
        );
    }

    #[test]
    fn every_packed_byte_decodes_to_its_trits() {
        // All 243 five-trit numbers survive pack + trit extraction.
        for t in 0..243u32 {
            let digits: Vec<u8> = (0..5).rev().map(|i| (t / 3u32.pow(i) % 3) as u8).collect();
            let b = pack(digits.iter().copied(), false);
            let back: Vec<u8> = (0..5).map(|n| trit(b, n)).collect();
            assert_eq!(back, digits, "{t}");
        }
    }

    #[test]
    fn lanes_add_up_to_the_dot() {
        let mut r = crate::testkit::simd::Rng::new(5);
        let x: Vec<f32> = (0..QK_K).map(|_| r.normal()).collect();
        let w: Vec<f32> = (0..QK_K).map(|_| r.normal()).collect();
        let (mut bw, mut bx) = ([0u8; BYTES], vec![0u8; crate::q8_k::BLOCK_BYTES]);
        quantize(&w, &mut bw);
        crate::q8_k::quantize(&x, &mut bx);
        let total: i32 = lane_sums(&bw, &bx).iter().sum();
        let qs = block_qs(&bx);
        let want: i32 = (0..QK_K)
            .map(|e| (code(&bw, e) as i32 - 1) * qs[e] as i8 as i32)
            .sum();
        assert_eq!(total, want);
    }
}

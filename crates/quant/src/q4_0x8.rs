//! Q4_0 weights interleaved by 8 rows at load time (eager loading, AVX2 and up), so the
//! matmul reads one contiguous stream and needs no shuffles. llama.cpp's x86 build repacks
//! Q4_0 the same way (`q4_0_8x8`); this layout is ours, shaped for our kernel, and gives the
//! same bits because only the order of integer work changes, never the float accumulation
//! (see [`crate::q4_0::vec_dot_repacked`]).
//!
//! A group of 8 rows keeps its place and size in the tensor (8 x 18 bytes per block column):
//!
//! | bytes    | field                                                                     |
//! |----------|---------------------------------------------------------------------------|
//! | 0..16    | the 8 rows' f16 scales of block i                                         |
//! | 16..144  | 4 chunks of 32 bytes; chunk m, byte 4r + c: low nibble = element 8m + c   |
//! |          | of row r, high nibble = element 8m + 4 + c                                |
//!
//! so unpacking chunk m gives, in 32-bit lane r, elements 8m..8m+4 (low nibbles) and
//! 8m+4..8m+8 (high nibbles) of row r: the four-element groups a dot-product instruction
//! multiplies by the same four activations in every lane.

use crate::q4_0::{BLOCK, BYTES};
use crate::scalar::le_f16;

/// Rows per interleaved group.
pub const ROWS: usize = 8;
/// Bytes of one block column of a group.
pub const GROUP_BYTES: usize = ROWS * BYTES;

/// Element `e` (0..32) of a Q4_0 block's quants `qs` as a nibble.
fn element(qs: &[u8], e: usize) -> u8 {
    if e < BLOCK / 2 {
        qs[e] & 0x0f
    } else {
        qs[e - BLOCK / 2] >> 4
    }
}

/// Blocks per row and bytes per row when `data` holds `rows` Q4_0 rows of `cols` elements in
/// whole groups of 8 rows.
fn fits(data: &[u8], rows: usize, cols: usize) -> Option<(usize, usize)> {
    let nb = cols / BLOCK;
    let row_bytes = nb * BYTES;
    (rows.is_multiple_of(ROWS) && cols.is_multiple_of(BLOCK) && data.len() == rows * row_bytes)
        .then_some((nb, row_bytes))
}

/// Rewrites `data` (`rows` Q4_0 rows of `cols` elements, `rows % 8 == 0`) into the
/// interleaved layout in place. Returns false, changing nothing, when the shape does not fit.
pub fn interleave(data: &mut [u8], rows: usize, cols: usize) -> bool {
    let Some((_, row_bytes)) = fits(data, rows, cols) else {
        return false;
    };
    let mut tmp = vec![0u8; ROWS * row_bytes];
    for group in data.chunks_exact_mut(ROWS * row_bytes) {
        tmp.copy_from_slice(group);
        for (i, out) in group.chunks_exact_mut(GROUP_BYTES).enumerate() {
            for r in 0..ROWS {
                let b = &tmp[r * row_bytes + i * BYTES..][..BYTES];
                out[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                let qs = &b[2..];
                for m in 0..4 {
                    for c in 0..4 {
                        let lo = element(qs, 8 * m + c);
                        let hi = element(qs, 8 * m + 4 + c);
                        out[16 + 32 * m + 4 * r + c] = lo | (hi << 4);
                    }
                }
            }
        }
    }
    true
}

/// The inverse of [`interleave`] (tests, and reading single rows back).
pub fn deinterleave(data: &mut [u8], rows: usize, cols: usize) -> bool {
    let Some((nb, row_bytes)) = fits(data, rows, cols) else {
        return false;
    };
    let mut tmp = vec![0u8; ROWS * row_bytes];
    for group in data.chunks_exact_mut(ROWS * row_bytes) {
        tmp.copy_from_slice(group);
        for i in 0..nb {
            let src = &tmp[i * GROUP_BYTES..][..GROUP_BYTES];
            for r in 0..ROWS {
                let b = &mut group[r * row_bytes + i * BYTES..][..BYTES];
                b[..2].copy_from_slice(&src[2 * r..2 * r + 2]);
                let mut el = [0u8; BLOCK];
                for m in 0..4 {
                    for c in 0..4 {
                        let v = src[16 + 32 * m + 4 * r + c];
                        el[8 * m + c] = v & 0x0f;
                        el[8 * m + 4 + c] = v >> 4;
                    }
                }
                for j in 0..BLOCK / 2 {
                    b[2 + j] = el[j] | (el[j + BLOCK / 2] << 4);
                }
            }
        }
    }
    true
}

/// Reference: the 8 rows of one interleaved `group` (`n` elements each) times each Q8_0 row
/// of `xs`, into `out[t * 8 + r]`, in llama.cpp's repacked order: one accumulator per output,
/// `acc = fma(isum, d_w * d_x, acc)` per block.
pub fn dot_group(n: usize, group: &[u8], xs: &[&[u8]], out: &mut [f32]) {
    let nb = n / BLOCK;
    for (t, x) in xs.iter().enumerate() {
        let mut acc = [0f32; ROWS];
        for i in 0..nb {
            let g = &group[i * GROUP_BYTES..][..GROUP_BYTES];
            let bx = &x[i * crate::q8_0::BYTES..][..crate::q8_0::BYTES];
            let xq = &bx[2..];
            for (r, a) in acc.iter_mut().enumerate() {
                let mut sumi = 0i32;
                for m in 0..4 {
                    for c in 0..4 {
                        let v = g[16 + 32 * m + 4 * r + c];
                        sumi += ((v & 0x0f) as i32 - 8) * xq[8 * m + c] as i8 as i32;
                        sumi += ((v >> 4) as i32 - 8) * xq[8 * m + 4 + c] as i8 as i32;
                    }
                }
                *a = (sumi as f32).mul_add(le_f16(g, 2 * r) * le_f16(bx, 0), *a);
            }
        }
        out[t * ROWS..(t + 1) * ROWS].copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rows(rows: usize, nb: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        let mut data = vec![0u8; rows * nb * BYTES];
        for b in data.chunks_exact_mut(BYTES) {
            for x in b.iter_mut() {
                *x = next();
            }
            // A finite f16 scale (exponent below the max).
            b[1] &= 0x3b;
        }
        data
    }

    #[test]
    fn interleave_round_trips_and_keeps_the_dot() {
        let (rows, nb) = (16, 5);
        let n = nb * BLOCK;
        let plain = random_rows(rows, nb, 7);
        let mut inter = plain.clone();
        assert!(interleave(&mut inter, rows, n));
        assert_ne!(inter, plain);
        let mut back = inter.clone();
        assert!(deinterleave(&mut back, rows, n));
        assert_eq!(back, plain);

        let mut xs_data = vec![0u8; 3 * nb * crate::q8_0::BYTES];
        let xf: Vec<f32> = (0..3 * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        crate::q8_0::quantize(&xf, &mut xs_data);
        let xs: Vec<&[u8]> = xs_data.chunks_exact(nb * crate::q8_0::BYTES).collect();
        let row_bytes = nb * BYTES;
        for g in 0..rows / ROWS {
            let mut out = [0f32; 3 * ROWS];
            dot_group(
                n,
                &inter[g * ROWS * row_bytes..][..ROWS * row_bytes],
                &xs,
                &mut out,
            );
            for (t, x) in xs.iter().enumerate() {
                for r in 0..ROWS {
                    let w = &plain[(g * ROWS + r) * row_bytes..][..row_bytes];
                    let want = crate::q4_0::vec_dot_repacked(n, w, x);
                    assert_eq!(
                        out[t * ROWS + r].to_bits(),
                        want.to_bits(),
                        "g{g} t{t} r{r}"
                    );
                }
            }
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_left_alone() {
        let mut d = random_rows(8, 1, 1);
        let orig = d.clone();
        assert!(!interleave(&mut d, 7, 32));
        assert!(!interleave(&mut d, 8, 31));
        assert!(!interleave(&mut d[..100], 8, 32));
        assert_eq!(d, orig);
    }
}

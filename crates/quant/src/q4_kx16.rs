//! Q4_K weights interleaved by 16 rows at load time (eager loading, AVX-512 VNNI), so one
//! 512-bit register holds the same four quants of 16 rows and a dot-product instruction
//! multiplies all of them by four broadcast activations: no shuffles and no horizontal sums.
//! llama.cpp's x86 build repacks Q4_K too (`q4_K_8x8`), and its order of float steps is
//! kept exactly (see [`dot_group`]): only the order of integer work changes.
//!
//! A group of 16 rows keeps its place and size in the tensor (16 x 144 bytes per super-block
//! column):
//!
//! | bytes      | field                                                                  |
//! |------------|------------------------------------------------------------------------|
//! | 0..32      | the 16 rows' f16 `d`                                                   |
//! | 32..64     | the 16 rows' f16 `dmin`                                                |
//! | 64..256    | packed scale byte `b` (0..12) of row `r` at `64 + 16 b + r`            |
//! | 256..2304  | chunk `k` (0..4), group `g` (0..8): at `256 + 64 (8 k + g) + 4 r + c`, |
//! |            | byte `32 k + 4 g + c` of row `r`'s quants                              |
//!
//! so 64 bytes hold, in 32-bit lane `r`, values `64k + 4g..+4` of row `r` in their low
//! nibbles (sub-block `2k`) and values `64k + 32 + 4g..+4` in their high nibbles (sub-block
//! `2k + 1`).

use crate::k_common::{get_scale_min_k4, QK_K};
use crate::q4_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;
use crate::scalar::le_f16;

/// Rows per interleaved group.
pub const ROWS: usize = 16;
/// Bytes of one super-block column of a group.
pub const GROUP_BYTES: usize = ROWS * BLOCK_BYTES;
/// Offsets inside a group's super-block column.
pub(crate) const G_DMIN: usize = 32;
pub(crate) const G_SCALES: usize = 64;
pub(crate) const G_QS: usize = 256;

/// Offsets inside a Q4_K block (see [`crate::q4_k`]).
const W_SCALES: usize = 4;
const W_QS: usize = 16;

/// Super-blocks per row and bytes per row when `data` holds `rows` Q4_K rows of `cols`
/// elements in whole groups.
fn fits(data: &[u8], rows: usize, cols: usize) -> Option<(usize, usize)> {
    let nb = cols / QK_K;
    let row_bytes = nb * BLOCK_BYTES;
    (rows.is_multiple_of(ROWS) && cols.is_multiple_of(QK_K) && data.len() == rows * row_bytes)
        .then_some((nb, row_bytes))
}

/// Runs of a plain block's bytes and where they go in the group's column, for row `r`:
/// `(offset in the block, offset in the column, length)`.
fn places(r: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let head = [(0, 2 * r, 2), (2, G_DMIN + 2 * r, 2)];
    let scales = (0..12).map(move |b| (W_SCALES + b, G_SCALES + 16 * b + r, 1));
    // Four quant bytes at a time: bytes 32k + 4g.. of the row.
    let qs = (0..32).map(move |q| (W_QS + 4 * q, G_QS + 64 * q + 4 * r, 4));
    head.into_iter().chain(scales).chain(qs)
}

/// Rewrites `data` (`rows` Q4_K rows of `cols` elements, `rows % 16 == 0`) into the
/// interleaved layout in place. Returns false, changing nothing, when the shape does not fit.
pub fn interleave(data: &mut [u8], rows: usize, cols: usize) -> bool {
    permute(data, rows, cols, false)
}

/// The inverse of [`interleave`] (the GPU upload, tests).
pub fn deinterleave(data: &mut [u8], rows: usize, cols: usize) -> bool {
    permute(data, rows, cols, true)
}

fn permute(data: &mut [u8], rows: usize, cols: usize, back: bool) -> bool {
    let Some((nb, row_bytes)) = fits(data, rows, cols) else {
        return false;
    };
    let mut tmp = vec![0u8; ROWS * row_bytes];
    for group in data.chunks_exact_mut(ROWS * row_bytes) {
        tmp.copy_from_slice(group);
        for i in 0..nb {
            for r in 0..ROWS {
                let plain = r * row_bytes + i * BLOCK_BYTES;
                let inter = i * GROUP_BYTES;
                for (p, g, len) in places(r) {
                    let (from, to) = if back {
                        (inter + g, plain + p)
                    } else {
                        (plain + p, inter + g)
                    };
                    group[to..to + len].copy_from_slice(&tmp[from..from + len]);
                }
            }
        }
    }
    true
}

/// Reference: the 16 rows of one interleaved `group` (`n` elements each) times each Q8_K row
/// of `xs`, into `out[t * 16 + r]`, in llama.cpp's repacked orders: per output two f32
/// chains (scales and mins), fed per 64-value chunk with `fma(isum, d_w * d_x, acc)`
/// (`gemm`, tokens in groups of 4) or per super-block with the four chunks' integers summed
/// first (`gemv`, the last `n_tokens % 4`); the result is their difference.
pub fn dot_group(n: usize, group: &[u8], xs: &[&[u8]], gemm: bool, out: &mut [f32]) {
    let nb = n / QK_K;
    for (t, x) in xs.iter().enumerate() {
        for r in 0..ROWS {
            let (mut acc, mut acc_m) = (0f32, 0f32);
            for i in 0..nb {
                let g = &group[i * GROUP_BYTES..][..GROUP_BYTES];
                let y = &x[i * Q8K_BYTES..][..Q8K_BYTES];
                let yd = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                let dd = le_f16(g, 2 * r) * yd;
                let dm = le_f16(g, G_DMIN + 2 * r) * yd;
                let packed: [u8; 12] = std::array::from_fn(|b| g[G_SCALES + 16 * b + r]);
                let bsum = |j: usize| i16::from_le_bytes([y[260 + 2 * j], y[261 + 2 * j]]);
                let (mut ci_sum, mut mi_sum) = (0i32, 0i32);
                for k in 0..4 {
                    let mut ci = 0i32;
                    let mut mi = 0i32;
                    for h in 0..2 {
                        let (sc, m) = get_scale_min_k4(2 * k + h, &packed);
                        let mut s = 0i32;
                        for gi in 0..8 {
                            for c in 0..4 {
                                let v = g[G_QS + 64 * (8 * k + gi) + 4 * r + c];
                                let q = if h == 0 { v & 0x0f } else { v >> 4 };
                                let yq = y[4 + 64 * k + 32 * h + 4 * gi + c] as i8;
                                s += q as i32 * yq as i32;
                            }
                        }
                        ci += sc as i32 * s;
                        // The sub-block's two 16-value sums, added as ggml does in i16.
                        let j = 2 * (2 * k + h);
                        mi += m as i32 * bsum(j).wrapping_add(bsum(j + 1)) as i32;
                    }
                    if gemm {
                        acc = (ci as f32).mul_add(dd, acc);
                        acc_m = (mi as f32).mul_add(dm, acc_m);
                    } else {
                        ci_sum = ci_sum.wrapping_add(ci);
                        mi_sum = mi_sum.wrapping_add(mi);
                    }
                }
                if !gemm {
                    acc = (ci_sum as f32).mul_add(dd, acc);
                    acc_m = (mi_sum as f32).mul_add(dm, acc_m);
                }
            }
            out[t * ROWS + r] = acc - acc_m;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::simd::Rng;

    /// `rows` random Q4_K rows of `nb` super-blocks with finite scales.
    pub(crate) fn random_rows(rng: &mut Rng, rows: usize, nb: usize) -> Vec<u8> {
        let mut data: Vec<u8> = (0..rows * nb * BLOCK_BYTES)
            .map(|_| rng.next() as u8)
            .collect();
        for b in data.chunks_exact_mut(BLOCK_BYTES) {
            for f in 0..2 {
                let d = half::f16::from_f32(rng.normal() * 0.01).to_bits();
                b[2 * f..2 * f + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        data
    }

    /// `t` Q8_K rows of `n` values from our activation quantizer.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn q8k_rows(rng: &mut Rng, t: usize, n: usize) -> Vec<Vec<u8>> {
        (0..t)
            .map(|_| {
                let x: Vec<f32> = (0..n).map(|_| rng.normal() * 3.0).collect();
                let mut q = vec![0u8; n / QK_K * Q8K_BYTES];
                crate::activation::quantize_q8_k(&x, &mut q);
                q
            })
            .collect()
    }

    #[test]
    fn interleave_round_trips_and_shapes_that_do_not_fit_are_left_alone() {
        let mut rng = Rng::new(3);
        let (rows, nb) = (32, 3);
        let plain = random_rows(&mut rng, rows, nb);
        let mut inter = plain.clone();
        assert!(interleave(&mut inter, rows, nb * QK_K));
        assert_ne!(inter, plain);
        let mut back = inter.clone();
        assert!(deinterleave(&mut back, rows, nb * QK_K));
        assert_eq!(back, plain);
        let mut d = plain.clone();
        assert!(!interleave(
            &mut d[..16 * nb * BLOCK_BYTES + 1],
            16,
            nb * QK_K
        ));
        assert!(!interleave(&mut d[..8 * nb * BLOCK_BYTES], 8, nb * QK_K));
        assert!(!interleave(&mut d, rows, nb * QK_K - 32));
        assert_eq!(d, plain);
    }

    /// The reference equals ggml's repacked orders as the single-row x86 kernels compute
    /// them (`gemm` and `gemv`), bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn reference_equals_the_single_row_repacked_kernels() {
        if crate::dispatch::detected_level() < crate::dispatch::SimdLevel::Avx2 {
            return;
        }
        let mut rng = Rng::new(11);
        for nb in [1, 2, 8] {
            let n = nb * QK_K;
            let plain = random_rows(&mut rng, ROWS, nb);
            let mut inter = plain.clone();
            assert!(interleave(&mut inter, ROWS, n));
            let xs = q8k_rows(&mut rng, 3, n);
            let xr: Vec<&[u8]> = xs.iter().map(|x| &x[..]).collect();
            for gemm in [true, false] {
                let mut out = vec![0f32; 3 * ROWS];
                dot_group(n, &inter, &xr, gemm, &mut out);
                let row_bytes = nb * BLOCK_BYTES;
                for (t, x) in xr.iter().enumerate() {
                    for r in 0..ROWS {
                        let w = &plain[r * row_bytes..][..row_bytes];
                        let want = if gemm {
                            crate::x86::q4_k::vec_dot_repack_gemm_avx2(n, w, x)
                        } else {
                            crate::x86::q4_k::vec_dot_repack_gemv_avx2(n, w, x)
                        };
                        assert_eq!(
                            out[t * ROWS + r].to_bits(),
                            want.to_bits(),
                            "{gemm} {t} {r}"
                        );
                    }
                }
            }
        }
    }
}

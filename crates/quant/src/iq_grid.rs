//! What the IQ lattice formats share (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S; one file each):
//! a super-block of 256 weights is an f16 scale `d` and 8 sub-blocks of 32, each sub-block
//! 4 groups of 8 values taken from a lattice grid (an index per group of 8, or per half for
//! the IQ3 types), 8 sign bits per group, and an odd integer scale `ls` per sub-block or per
//! half of one. Weight = `d * ls * FACTOR * (±grid value)`, with a power-of-two `FACTOR` per
//! format. The formats differ only in how a sub-block is packed, which each describes by
//! [`Lattice::sub`].
//!
//! The grids are ggml's own tables, kept as data in `iq_grids/` (written from ggml's source
//! by `scripts/quant-goldens/extract-grids.py`).
//!
//! A dot with a Q8_K row is exact integer arithmetic within a super-block, so what differs
//! between ggml's code paths is only how the integers are grouped before the float math:
//! - [`vec_dot`]: ggml's portable order: `sumf += (d_w * d_x) * S` per super-block, with `S`
//!   the super-block's integer sum, then `FACTOR * sumf`;
//! - [`vec_dot_lanes`]: ggml's AVX2 order (its x86 build, fewer than 8 tokens): 8 integer
//!   lanes per super-block (lane k holds elements 4k..4k+4 of every sub-block), each
//!   fused-multiply-added with `d_w * d_x` into its own float accumulator, reduced with
//!   `hsum_float_8`, then times `FACTOR`;
//! - [`vec_dot_tiled`]: llama.cpp's tiled matmul (8 or more tokens): `r = (d_w * FACTOR) * S`,
//!   `acc = fma(d_x, r, acc)`.

use crate::k_common::QK_K;
use crate::scalar::le_f16;

pub(crate) const fn table_u64<const N: usize>(b: &[u8]) -> [u64; N] {
    let mut t = [0u64; N];
    let mut i = 0;
    while i < N {
        let o = 8 * i;
        t[i] = u64::from_le_bytes([
            b[o],
            b[o + 1],
            b[o + 2],
            b[o + 3],
            b[o + 4],
            b[o + 5],
            b[o + 6],
            b[o + 7],
        ]);
        i += 1;
    }
    t
}

const fn table_u32<const N: usize>(b: &[u8]) -> [u32; N] {
    let mut t = [0u32; N];
    let mut i = 0;
    while i < N {
        let o = 4 * i;
        t[i] = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        i += 1;
    }
    t
}

/// ggml's `iq2xxs_grid`: 256 groups of 8 values from {8, 25, 43}, one per byte.
pub static IQ2XXS_GRID: [u64; 256] = table_u64(include_bytes!("iq_grids/iq2xxs.bin"));
/// ggml's `iq2xs_grid` (512 groups).
pub static IQ2XS_GRID: [u64; 512] = table_u64(include_bytes!("iq_grids/iq2xs.bin"));
/// ggml's `iq2s_grid` (1024 groups).
pub static IQ2S_GRID: [u64; 1024] = table_u64(include_bytes!("iq_grids/iq2s.bin"));
/// ggml's `iq3xxs_grid`: 256 groups of 4 values from 4 to 62, one per byte.
pub static IQ3XXS_GRID: [u32; 256] = table_u32(include_bytes!("iq_grids/iq3xxs.bin"));
/// ggml's `iq3s_grid` (512 groups of 4).
pub static IQ3S_GRID: [u32; 512] = table_u32(include_bytes!("iq_grids/iq3s.bin"));

/// ggml's `ksigns_iq2xs`: 7 stored sign bits, and the 8th that makes the number of negative
/// values in the group even.
pub const KSIGNS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8 | (((i as u32).count_ones() & 1) << 7) as u8;
        i += 1;
    }
    t
};

/// Per sign byte, 8 bytes of +1 (0x01) or -1 (0xff): bit j set makes byte j negative. The
/// multiplier vector of `_mm256_sign_epi8`.
pub const SIGN_BYTES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut j = 0;
        while j < 8 {
            let byte: u64 = if (b >> j) & 1 == 1 { 0xff } else { 0x01 };
            t[b] |= byte << (8 * j);
            j += 1;
        }
        b += 1;
    }
    t
};

/// One sub-block of 32 weights: 4 groups of 8 unsigned grid values (value j of group l is
/// byte j of `grid[l]`), the groups' sign bytes (bit j set: value j is negative), and the
/// odd integer scale of each half (elements 0..16 and 16..32).
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    pub grid: [u64; 4],
    pub signs: [u8; 4],
    pub ls: [i32; 2],
}

/// A lattice format: its block size, its sub-block unpacking and its power-of-two factor.
pub trait Lattice {
    const BYTES: usize;
    /// 0.125 for the IQ2 types, 0.25 for IQ3_XXS, 1 for IQ3_S.
    const FACTOR: f32;
    /// Sub-block `ib` (0..8) of block `b`.
    fn sub(b: &[u8], ib: usize) -> Sub;
}

/// Offsets in a Q8_K block (see [`crate::q8_k`]).
const X_QS: usize = 4;

pub(crate) fn q8k_d(bx: &[u8]) -> f32 {
    f32::from_le_bytes([bx[0], bx[1], bx[2], bx[3]])
}

/// Exactly ggml's `dequantize_row_iq*`: `((d * ls) * FACTOR) * value`, the sign applied last
/// (ggml multiplies by ±1, which only flips the sign).
pub fn dequantize<L: Lattice>(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(L::BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = le_f16(b, 0);
        for (ib, ys) in y.chunks_exact_mut(32).enumerate() {
            let s = L::sub(b, ib);
            for (l, yg) in ys.chunks_exact_mut(8).enumerate() {
                // ggml's `d * (0.5 + ls4) * 0.25` equals `d * ls * 0.125` with ls = 2 ls4 + 1:
                // scaling by two commutes with rounding.
                let db = d * s.ls[l / 2] as f32 * L::FACTOR;
                for (j, v) in yg.iter_mut().enumerate() {
                    let x = db * ((s.grid[l] >> (8 * j)) & 0xff) as f32;
                    *v = if (s.signs[l] >> j) & 1 == 1 { -x } else { x };
                }
            }
        }
    }
}

/// The 8 integer lanes of one super-block against a Q8_K block (lane k: elements 4k..4k+4
/// of every sub-block, times their half's scale).
pub fn block_lanes<L: Lattice>(bw: &[u8], bx: &[u8]) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for ib in 0..8 {
        let s = L::sub(bw, ib);
        let q8 = &bx[X_QS + 32 * ib..X_QS + 32 * ib + 32];
        for (e, &q) in q8.iter().enumerate() {
            let (l, j) = (e / 8, e % 8);
            let g = ((s.grid[l] >> (8 * j)) & 0xff) as i32;
            let v = if (s.signs[l] >> j) & 1 == 1 { -g } else { g };
            lanes[e / 4] += s.ls[e / 16] * v * q as i8 as i32;
        }
    }
    lanes
}

fn blocks<'a, L: Lattice>(
    n: usize,
    w: &'a [u8],
    x: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    w.chunks_exact(L::BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
}

/// ggml's portable `ggml_vec_dot_iq*_q8_K_generic` order (no fused multiply-add).
pub fn vec_dot<L: Lattice>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in blocks::<L>(n, w, x) {
        let d = le_f16(bw, 0) * q8k_d(bx);
        let s: i32 = block_lanes::<L>(bw, bx).iter().sum();
        sumf += d * s as f32;
    }
    L::FACTOR * sumf
}

/// ggml's `hsum_float_8` order: halves, then pairs two apart, then the last two.
pub(crate) fn hsum8(a: [f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml's AVX2 order (see the module comment), in scalar code: the reference the SIMD
/// kernel in `x86/iq_grid.rs` is tested against.
pub fn vec_dot_lanes<L: Lattice>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    for (bw, bx) in blocks::<L>(n, w, x) {
        let d = le_f16(bw, 0) * q8k_d(bx);
        for (a, s) in acc.iter_mut().zip(block_lanes::<L>(bw, bx)) {
            *a = d.mul_add(s as f32, *a);
        }
    }
    L::FACTOR * hsum8(acc)
}

/// llama.cpp's tiled-matmul order (see the module comment), in scalar code.
pub fn vec_dot_tiled<L: Lattice>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (bw, bx) in blocks::<L>(n, w, x) {
        let s: i32 = block_lanes::<L>(bw, bx).iter().sum();
        let r = (le_f16(bw, 0) * L::FACTOR) * s as f32;
        acc = q8k_d(bx).mul_add(r, acc);
    }
    acc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn sign_tables_are_ggmls() {
        // Spot values of ggml's ksigns_iq2xs.
        assert_eq!(&KSIGNS[..8], &[0, 129, 130, 3, 132, 5, 6, 135]);
        assert_eq!(KSIGNS[127], 255);
        assert_eq!(SIGN_BYTES[0], 0x0101_0101_0101_0101);
        assert_eq!(SIGN_BYTES[0x81], 0xff01_0101_0101_01ff);
    }

    #[test]
    fn grids_are_ggmls() {
        // First and last entries of each table in ggml-common.h.
        assert_eq!(IQ2XXS_GRID[0], 0x0808_0808_0808_0808);
        assert_eq!(IQ2XXS_GRID[1], 0x0808_0808_0808_082b);
        assert_eq!(IQ3XXS_GRID[0], 0x0404_0404);
        assert_eq!(IQ3XXS_GRID[2], 0x0404_0424);
        for g in IQ2XXS_GRID.iter().chain(&IQ2XS_GRID).chain(&IQ2S_GRID) {
            assert!(g.to_le_bytes().iter().all(|b| [8, 25, 43].contains(b)));
        }
        for g in IQ3XXS_GRID.iter().chain(&IQ3S_GRID) {
            assert!(g.to_le_bytes().iter().all(|b| (1..=62).contains(b)));
        }
    }

    /// Made-up blocks, as `scripts/quant-goldens/matmul_hash.c` makes them: every byte from
    /// the block's values, the f16 scale set to 2^-10 (1 + m / 1024).
    pub(crate) fn fake_quantize<L: Lattice>(src: &[f32], dst: &mut [u8]) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(L::BYTES)) {
            for (o, v) in b.iter_mut().zip(x) {
                *o = (v.to_bits() >> 8) as u8;
            }
            let d = 0x1400 | ((x[QK_K - 1].to_bits() >> 5) & 0x3ff) as u16;
            b[..2].copy_from_slice(&d.to_le_bytes());
        }
    }

    /// The checks every lattice format runs: dequantization and the three dot orders
    /// against ggml's hashes (`matmul_hash TYPE 512 32 N plain 1 detail`, b11434; `quant`,
    /// `dequant` and the outputs for 1, 3, 8 and 13 tokens), and the portable dot against
    /// the dequantized weights.
    pub(crate) fn check_format<L: Lattice>(
        ty: crate::GgmlType,
        (quant, dequant): (u64, u64),
        outs: [(usize, u64); 4],
    ) {
        let (k, m) = (512, 32);
        let row = ty.row_bytes(k as u64).unwrap() as usize;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut w = vec![0u8; m * row];
        for (r, wr) in w.chunks_exact_mut(row).enumerate() {
            let v = crate::testkit::ggml_side_values(&mut state, k, (1 << (r % 3)) as f32);
            fake_quantize::<L>(&v, wr);
        }
        let fnv = |bytes: &mut dyn Iterator<Item = u8>| {
            bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            })
        };
        assert_eq!(fnv(&mut w.iter().copied()), quant, "{ty}: made-up blocks");
        let mut back = vec![0f32; m * k];
        crate::dequantize_row(ty, &w, &mut back).unwrap();
        assert_eq!(
            fnv(&mut back.iter().flat_map(|v| v.to_le_bytes())),
            dequant,
            "{ty}: dequantized values differ from ggml's"
        );
        for (n, want) in outs {
            let kernel: crate::dispatch::VecDotFn = if n >= 8 {
                vec_dot_tiled::<L>
            } else {
                vec_dot_lanes::<L>
            };
            let got = crate::testkit::matmul_hash(ty, fake_quantize::<L>, (k, m, n), &|_| kernel);
            assert_eq!(got, want, "{ty}: {n} tokens");
            // What the matmul policy picks on this machine (the goldens are x86 AVX2 ones).
            #[cfg(target_arch = "x86_64")]
            if crate::dispatch::active_level() >= crate::dispatch::SimdLevel::Avx2 {
                let plan = crate::order::matmul_plan(ty, m, n).unwrap();
                let got = crate::testkit::matmul_hash(ty, fake_quantize::<L>, (k, m, n), &|_| {
                    plan.first.one
                });
                assert_eq!(got, want, "{ty}: {n} tokens, planned kernel");
            }
        }
        // The portable order against the dequantized weights, in f64.
        let xv = crate::testkit::ggml_side_values(&mut state, k, 1.0);
        let mut xq = vec![0u8; crate::q8_k::BLOCK_BYTES * k / QK_K];
        crate::q8_k::quantize(&xv, &mut xq);
        let mut xd = vec![0f32; k];
        crate::q8_k::dequantize(&xq, &mut xd);
        for (r, wr) in w.chunks_exact(row).enumerate() {
            let terms = back[r * k..(r + 1) * k]
                .iter()
                .zip(&xd)
                .map(|(a, b)| *a as f64 * *b as f64);
            let (exact, size) = terms.fold((0f64, 0f64), |(s, a), t| (s + t, a + t.abs()));
            let got = vec_dot::<L>(k, wr, &xq) as f64;
            assert!(
                (got - exact).abs() <= 1e-5 * size,
                "{ty} row {r}: {got} vs {exact}"
            );
        }
    }
}

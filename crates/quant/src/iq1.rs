//! What IQ1_S and IQ1_M share (one file each): super-blocks of 256 weights in 8 sub-blocks of
//! 32, each sub-block 4 groups of 8 ternary values (-1, 0, 1) from [`IQ1S_GRID`] (an 11-bit
//! index per group), a shift `delta` of ±1/8 per group (IQ1_S: per sub-block), and an odd
//! integer scale per half sub-block (IQ1_S: per sub-block). Weight =
//! `d * ls * (value + delta)`.
//!
//! A dot with a Q8_K row splits into two exact integer sums per super-block, `S1` over
//! `ls * value * q` and `S2` over `ls * sign(delta) * q`; the result is
//! `d_w * d_x * (S1 + S2 / 8)` summed over super-blocks, in one of llama.cpp's orders:
//! - [`vec_dot`]: ggml's portable order: `sumf += (d_w * d_x) * (S1 + S2 / 8)`;
//! - [`vec_dot_lanes`]: ggml's AVX2 code as GCC compiles it (its x86 build contracts
//!   `a + b * c` into fused multiply-adds): `S1` in 8 lanes (elements 4k..4k+4 of every
//!   sub-block) each fused-multiply-added with `d_w * d_x` into its own accumulator; IQ1_S
//!   keeps `S2` as one integer and one float chain, IQ1_M in 8 lanes like `S1`; at the end
//!   `hsum(S1 lanes) + 1/8 * (S2 chain)` as one fused multiply-add;
//! - [`vec_dot_tiled`]: llama.cpp's tiled matmul (8 or more tokens): the weights stored as
//!   `8 * value ± 1`, so `S = 8 S1 + S2`, `r = (d_w / 8) * S`, `acc = fma(d_x, r, acc)`.

use crate::iq_grid::{hsum8, q8k_d, table_u64};
use crate::k_common::QK_K;

/// ggml's `iq1s_grid`: 2048 groups of 8 values in {-1, 0, 1}, one signed byte each.
pub static IQ1S_GRID: [u64; 2048] = table_u64(include_bytes!("iq_grids/iq1s.bin"));

/// One sub-block: the 4 groups' grid entries, whether each group's delta is negative, and
/// the odd integer scale of each half.
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    pub grid: [u64; 4],
    pub delta_neg: [bool; 4],
    pub ls: [i32; 2],
}

/// An IQ1 format: block size, super-block scale and sub-block unpacking.
pub trait Ternary {
    const BYTES: usize;
    fn d(b: &[u8]) -> f32;
    fn sub(b: &[u8], ib: usize) -> Sub;
    /// Whether ggml's AVX2 code keeps `S2` in 8 lanes (IQ1_M) or as one integer (IQ1_S).
    const S2_IN_LANES: bool;
}

const DELTA: f32 = 0.125;
const X_QS: usize = 4;

fn value(g: u64, j: usize) -> i32 {
    (g >> (8 * j)) as u8 as i8 as i32
}

/// Exactly ggml's `dequantize_row_iq1_*`: `(d * ls) * (value + delta)`.
pub fn dequantize<T: Ternary>(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(T::BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = T::d(b);
        for (ib, ys) in y.chunks_exact_mut(32).enumerate() {
            let s = T::sub(b, ib);
            for (l, yg) in ys.chunks_exact_mut(8).enumerate() {
                let dl = d * s.ls[l / 2] as f32;
                let delta = if s.delta_neg[l] { -DELTA } else { DELTA };
                for (j, v) in yg.iter_mut().enumerate() {
                    *v = dl * (value(s.grid[l], j) as f32 + delta);
                }
            }
        }
    }
}

/// The integer lanes of one super-block: `S1` and `S2` per lane k (elements 4k..4k+4 of
/// every sub-block).
pub fn block_lanes<T: Ternary>(bw: &[u8], bx: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (mut s1, mut s2) = ([0i32; 8], [0i32; 8]);
    for ib in 0..8 {
        let s = T::sub(bw, ib);
        let q8 = &bx[X_QS + 32 * ib..X_QS + 32 * ib + 32];
        for (e, &q) in q8.iter().enumerate() {
            let (l, q) = (e / 8, q as i8 as i32);
            let ls = s.ls[e / 16];
            s1[e / 4] += ls * value(s.grid[l], e % 8) * q;
            s2[e / 4] += ls * if s.delta_neg[l] { -q } else { q };
        }
    }
    (s1, s2)
}

fn blocks<'a, T: Ternary>(
    n: usize,
    w: &'a [u8],
    x: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    w.chunks_exact(T::BYTES)
        .zip(x.chunks_exact(crate::q8_k::BLOCK_BYTES))
        .take(n / QK_K)
}

/// ggml's portable order (no fused multiply-add).
pub fn vec_dot<T: Ternary>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (bw, bx) in blocks::<T>(n, w, x) {
        let (s1, s2) = block_lanes::<T>(bw, bx);
        let (s1, s2): (i32, i32) = (s1.iter().sum(), s2.iter().sum());
        sumf += T::d(bw) * q8k_d(bx) * (s1 as f32 + DELTA * s2 as f32);
    }
    sumf
}

/// ggml's AVX2 order (see the module comment), in scalar code; on x86 this is the kernel.
pub fn vec_dot_lanes<T: Ternary>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (mut acc1, mut acc2, mut chain) = ([0f32; 8], [0f32; 8], 0f32);
    for (bw, bx) in blocks::<T>(n, w, x) {
        let d = q8k_d(bx) * T::d(bw);
        let (s1, s2) = block_lanes::<T>(bw, bx);
        for k in 0..8 {
            acc1[k] = d.mul_add(s1[k] as f32, acc1[k]);
            acc2[k] = d.mul_add(s2[k] as f32, acc2[k]);
        }
        chain = d.mul_add(s2.iter().sum::<i32>() as f32, chain);
    }
    let s2 = if T::S2_IN_LANES { hsum8(acc2) } else { chain };
    DELTA.mul_add(s2, hsum8(acc1))
}

/// llama.cpp's tiled-matmul order (see the module comment).
pub fn vec_dot_tiled<T: Ternary>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0f32;
    for (bw, bx) in blocks::<T>(n, w, x) {
        let (s1, s2) = block_lanes::<T>(bw, bx);
        let s = 8 * s1.iter().sum::<i32>() + s2.iter().sum::<i32>();
        let r = (T::d(bw) * 0.125) * s as f32;
        acc = q8k_d(bx).mul_add(r, acc);
    }
    acc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn grid_is_ggmls() {
        assert_eq!(IQ1S_GRID[0], 0xffff_ffff_ffff_ffff);
        assert_eq!(IQ1S_GRID[1], 0xffff_ffff_ffff_ff01);
        for g in IQ1S_GRID {
            assert!(g.to_le_bytes().iter().all(|b| [0xff, 0, 1].contains(b)));
        }
    }

    /// Made-up blocks as `scripts/quant-goldens/matmul_hash.c` makes them (any bytes are a
    /// valid block; the f16 scale set to 2^-10 (1 + m / 1024)), via `set_d`.
    pub(crate) fn fake_quantize(
        src: &[f32],
        dst: &mut [u8],
        bytes: usize,
        set_d: fn(&mut [u8], u16),
    ) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(bytes)) {
            for (o, v) in b.iter_mut().zip(x) {
                *o = (v.to_bits() >> 8) as u8;
            }
            set_d(b, 0x1400 | ((x[QK_K - 1].to_bits() >> 5) & 0x3ff) as u16);
        }
    }

    /// Dequantization and the three orders against ggml's hashes (`matmul_hash TYPE 512 32
    /// N plain 1 detail`: `quant`, `dequant` and the outputs for 1, 3, 8 and 13 tokens), the
    /// kernel the matmul policy picks, and the portable dot against the dequantized weights.
    pub(crate) fn check_format<T: Ternary>(
        ty: crate::GgmlType,
        fake: crate::format::QuantizeFn,
        (quant, dequant): (u64, u64),
        outs: [(usize, u64); 4],
    ) {
        let (k, m) = (512, 32);
        let row = ty.row_bytes(k as u64).unwrap() as usize;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut w = vec![0u8; m * row];
        for (r, wr) in w.chunks_exact_mut(row).enumerate() {
            fake(
                &crate::testkit::ggml_side_values(&mut state, k, (1 << (r % 3)) as f32),
                wr,
            );
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
                vec_dot_tiled::<T>
            } else {
                vec_dot_lanes::<T>
            };
            let got = crate::testkit::matmul_hash(ty, fake, (k, m, n), &|_| kernel);
            assert_eq!(got, want, "{ty}: {n} tokens");
            #[cfg(target_arch = "x86_64")]
            if crate::dispatch::active_level() >= crate::dispatch::SimdLevel::Avx2 {
                let plan = crate::order::matmul_plan(ty, m, n).unwrap();
                let got = crate::testkit::matmul_hash(ty, fake, (k, m, n), &|_| plan.first.one);
                assert_eq!(got, want, "{ty}: {n} tokens, planned kernel");
            }
        }
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
            let got = vec_dot::<T>(k, wr, &xq) as f64;
            assert!(
                (got - exact).abs() <= 1e-5 * size,
                "{ty} row {r}: {got} vs {exact}"
            );
        }
    }
}

//! Q8_0 x Q8_0 for batches of many tokens (AVX-512 VNNI), 16 tokens in the lanes of a
//! register, in the order of ggml's x86 `ggml_vec_dot_q8_0_q8_0` (the `avx512` single-row
//! kernel's, bit for bit). The layout is [`super::q4_1_lanes`]'s: per (row, token) ggml keeps
//! 8 float lanes, lane j accumulating `fma(d_w * d_x, float(sum of products 4j..4j+3), lane)`;
//! here register j of a weight row holds lane j of all 16 tokens, the activations are packed
//! once per matmul with the tokens interleaved, and `hsum_float_8` is three vector adds.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. ggml makes the weights unsigned with its
//! sign trick; here the activations are instead packed as `y + 128` (unsigned), the weights
//! broadcast as they are, and the `128 * (sum of the weights)` that adds is taken out again
//! when the integer sum becomes a float. Each `vpdpbusd` starts from the bits of 1.5 * 2^23,
//! so the float read back is exactly `1.5 * 2^23 + sum + 128 * wsum` (|sum|, |128 * wsum| <=
//! 2^16), and subtracting the float `1.5 * 2^23 + 128 * wsum` (one `vpdpbusd` per row block
//! for all 8 lanes) leaves exactly the sum. That is the true sum of products, which equals
//! ggml's except where an activation is -128 against a negative weight (ggml's `-(-128)`
//! wraps): activations quantized from floats never hold -128, but for any group that does
//! (`pack` flags it) the tile takes the single-row kernel instead.

use std::arch::x86_64::*;

use super::f16_at;
use crate::q8_0::BYTES;

/// Weight rows per call (exactly); each row runs on its own over the packed group, as in
/// [`super::q4_1_lanes`].
pub(crate) const ROWS: usize = 4;
/// Tokens per call (at most): the lanes of a 512-bit register.
pub(crate) const TOKS: usize = 16;
// The results go out through `q4_1_lanes::store_rows`, written for that shape.
const _: () = assert!(ROWS == super::q4_1_lanes::ROWS && TOKS == super::q4_1_lanes::TOKS);

/// Bytes of one packed block of a token group: the 4 activations (+128) of lane j for token
/// t at `4 * (j * TOKS + t)`, then the 16 `d_x` as f32, then their f16 bits.
const PACK_BLOCK: usize = 4 * 8 * TOKS + 4 * TOKS + 2 * TOKS;
const PACK_D: usize = 4 * 8 * TOKS;
const PACK_D16: usize = PACK_D + 4 * TOKS;
/// The group's header: byte 0 is 1 where some activation is -128, then the token count.
const HEADER: usize = 64;

/// 1.5 * 2^23 as f32 bits (see the module notes).
const MAGIC: i32 = super::q4_1_lanes::MAGIC;

/// How far ahead the weight row is prefetched (see `q4_1_lanes::PF_DIST`).
const PF_DIST: usize = super::q4_1_lanes::PF_DIST;

/// Bytes of one packed token group for rows of `cols` values.
pub(crate) fn pack_bytes(cols: usize) -> usize {
    HEADER + cols / 32 * PACK_BLOCK
}

/// Packs 1..=16 Q8_0 rows of `cols` values into one token group (missing tokens repeat the
/// last; their lanes are computed and never stored).
pub(crate) fn pack(cols: usize, xs: &[&[u8]], out: &mut [u8]) {
    let nb = cols / 32;
    assert!(
        cols.is_multiple_of(32)
            && !xs.is_empty()
            && xs.len() <= TOKS
            && out.len() >= pack_bytes(cols)
            && xs.iter().all(|x| x.len() >= nb * BYTES),
        "Q8_0 lane tile pack: {} tokens of {cols} values into {} bytes",
        xs.len(),
        out.len()
    );
    let (head, body) = out.split_at_mut(HEADER);
    let mut wraps = false;
    for (i, o) in body[..nb * PACK_BLOCK]
        .chunks_exact_mut(PACK_BLOCK)
        .enumerate()
    {
        for t in 0..TOKS {
            let b = &xs[t.min(xs.len() - 1)][i * BYTES..(i + 1) * BYTES];
            for (j, q) in b[2..].chunks_exact(4).enumerate() {
                let u = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
                // -128 is the byte 0x80: any byte of the four equal to it.
                wraps |=
                    (u ^ 0x8080_8080).wrapping_sub(0x0101_0101) & !(u ^ 0x8080_8080) & 0x8080_8080
                        != 0;
                o[4 * (j * TOKS + t)..][..4].copy_from_slice(&(u ^ 0x8080_8080).to_le_bytes());
            }
            let d = half::f16::from_le_bytes([b[0], b[1]]);
            o[PACK_D + 4 * t..][..4].copy_from_slice(&d.to_f32().to_le_bytes());
            o[PACK_D16 + 2 * t..][..2].copy_from_slice(&b[..2]);
        }
    }
    head[0] = wraps as u8;
}

/// `ws` (4 rows of `cols` values) times one packed group of `xs.len()` (1..=16) tokens
/// (every entry of `xs` is the group, see [`pack`]): `out[t * 4 + r]`, each equal to the
/// `avx512` single-row kernel's result.
pub(crate) fn tile_avx512(cols: usize, ws: &[&[u8]], xs: &[&[u8]], out: &mut [f32]) {
    let nb = cols / 32;
    assert!(
        cols.is_multiple_of(32)
            && ws.len() == ROWS
            && !xs.is_empty()
            && xs.len() <= TOKS
            && out.len() >= xs.len() * ROWS
            && ws.iter().all(|w| w.len() >= nb * BYTES)
            && xs[0].len() >= pack_bytes(cols),
        "Q8_0 lane tile: {} rows x {} tokens of {cols} values",
        ws.len(),
        xs.len()
    );
    assert!(super::has_avx512(), "Q8_0 lane tile needs AVX-512 VNNI");
    let xp = xs[0];
    if xp[0] != 0 {
        return wrapping_fallback(cols, ws, xp, xs.len(), out);
    }
    let w = [
        ws[0].as_ptr(),
        ws[1].as_ptr(),
        ws[2].as_ptr(),
        ws[3].as_ptr(),
    ];
    // SAFETY: AVX-512 VNNI was checked above; every row holds `nb` blocks and the packed
    // group `nb` packed blocks after its header, `out` room for `xs.len()` tokens
    // (asserted).
    unsafe { tile_vnni(nb, w, xp[HEADER..].as_ptr(), xs.len(), out) }
}

/// The four rows one after another, their results kept in registers up to the store (see
/// `q4_1_lanes::tile_vnni`).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; every row must hold `nb` Q8_0 blocks, `xp` `nb`
/// packed blocks, `out` at least `m * 4` values, `m <= 16`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni(nb: usize, w: [*const u8; ROWS], xp: *const u8, m: usize, out: &mut [f32]) {
    // SAFETY: the caller's contract, row by row.
    let res = unsafe {
        [
            row_vnni(nb, w[0], xp),
            row_vnni(nb, w[1], xp),
            row_vnni(nb, w[2], xp),
            row_vnni(nb, w[3], xp),
        ]
    };
    super::q4_1_lanes::store_rows(res, m, out)
}

/// A group holding a -128 activation: its Q8_0 rows rebuilt from the packed bytes and each
/// product taken by the single-row kernel (where ggml's sign trick wraps).
#[cold]
fn wrapping_fallback(cols: usize, ws: &[&[u8]], xp: &[u8], m: usize, out: &mut [f32]) {
    let nb = cols / 32;
    let one = crate::dispatch::kernel(crate::GgmlType::Q8_0, crate::dispatch::SimdLevel::Avx512)
        .expect("AVX-512 Q8_0 kernel");
    let mut row = vec![0u8; nb * BYTES];
    for t in 0..m {
        for (i, b) in row.chunks_exact_mut(BYTES).enumerate() {
            let p = &xp[HEADER + i * PACK_BLOCK..][..PACK_BLOCK];
            b[..2].copy_from_slice(&p[PACK_D16 + 2 * t..][..2]);
            for (j, q) in b[2..].chunks_exact_mut(4).enumerate() {
                for (k, q) in q.iter_mut().enumerate() {
                    *q = p[4 * (j * TOKS + t) + k] ^ 0x80;
                }
            }
        }
        for (r, w) in ws.iter().enumerate() {
            out[t * ROWS + r] = one(cols, w, &row);
        }
    }
}

/// One weight row against a packed group (after its header): the 16 tokens' results, in
/// the lanes.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `w` must hold `nb` Q8_0 blocks and `xp` `nb`
/// packed blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn row_vnni(nb: usize, w: *const u8, xp: *const u8) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 8];
    let magic = _mm512_set1_epi32(MAGIC);
    let mut corr = [0i32; 8];
    // SAFETY (whole loop): block `i` < `nb` of the row and of the packed group is in bounds
    // (the caller's contract); `corr` is read within its length; loads are unaligned.
    unsafe {
        for i in 0..nb {
            let p = xp.add(i * PACK_BLOCK);
            let bw = w.add(i * BYTES);
            // A hint only: no fault, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(bw.wrapping_add(PF_DIST) as *const i8);
            // d_w * d_x, rounded as ggml's scalar product, for every token at once.
            let dx = _mm512_loadu_ps(p.add(PACK_D) as *const f32);
            let d = _mm512_mul_ps(_mm512_set1_ps(f16_at(bw)), dx);
            // Per lane, the bits of 1.5 * 2^23 + 128 * (sum of its four weights).
            let qw = _mm256_loadu_si256(bw.add(2) as *const __m256i);
            let c =
                _mm256_dpbusd_epi32(_mm256_set1_epi32(MAGIC), _mm256_set1_epi8(0x80u8 as i8), qw);
            _mm256_storeu_si256(corr.as_mut_ptr() as *mut __m256i, c);
            for (j, acc) in acc.iter_mut().enumerate() {
                let y = _mm512_loadu_si512(p.add(64 * j) as *const __m512i);
                let wj = super::q4_1_lanes::broadcast_dword(bw.add(2 + 4 * j) as *const i32);
                let s = _mm512_dpbusd_epi32(magic, y, wj);
                let cj = super::q4_1_lanes::broadcast_dword(corr.as_ptr().add(j));
                let f = _mm512_sub_ps(_mm512_castsi512_ps(s), _mm512_castsi512_ps(cj));
                *acc = _mm512_fmadd_ps(d, f, *acc);
            }
        }
    }
    // hsum_float_8's tree: lanes four apart, then two apart, then the last two.
    let t: [__m512; 4] = std::array::from_fn(|k| _mm512_add_ps(acc[k + 4], acc[k]));
    let u = [_mm512_add_ps(t[0], t[2]), _mm512_add_ps(t[1], t[3])];
    _mm512_add_ps(u[0], u[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, kernel, SimdLevel};
    use crate::testkit::simd::Rng;
    use crate::GgmlType;

    /// Every token count equals the single-row `avx512` kernel bit for bit, on random
    /// blocks, extreme quants (-128 on both sides, which takes the fallback, and +-127), f16
    /// scales at the range ends (largest, subnormal, zeros) and rows at odd addresses.
    #[test]
    fn tile_equals_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let one = kernel(GgmlType::Q8_0, SimdLevel::Avx512).unwrap();
        let mut rng = Rng::new(80);
        for case in 0..6 {
            for nb in [1usize, 3, 7, 18] {
                for shift in [0usize, 1] {
                    let n = nb * 32;
                    let mut row = |weights: bool| -> Vec<u8> {
                        let mut r: Vec<u8> =
                            (0..shift + nb * BYTES).map(|_| rng.next() as u8).collect();
                        for b in r[shift..].chunks_exact_mut(BYTES) {
                            let d: u16 = match case {
                                0 | 1 | 5 => half::f16::from_f32(rng.normal() * 0.02).to_bits(),
                                2 => 0x7bff | ((rng.next() as u16 & 1) << 15),
                                3 => 1 + rng.below(0x3ff) as u16,
                                _ => [0u16, 0x8000, 0x3c00][rng.below(3) as usize],
                            };
                            b[..2].copy_from_slice(&d.to_le_bytes());
                            for q in &mut b[2..] {
                                if case == 1 || case == 5 {
                                    *q = [0x80u8, 0x7f, 0x81, 0, 0xff][rng.below(5) as usize];
                                }
                                // Activations as quantized never hold -128, except in case
                                // 1 (ggml's wrap, on both sides: the fallback).
                                if case != 1 && !weights && *q == 0x80 {
                                    *q = 0x81;
                                }
                            }
                        }
                        r
                    };
                    let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row(true)).collect();
                    let xs: Vec<Vec<u8>> = (0..TOKS).map(|_| row(false)).collect();
                    let wr: Vec<&[u8]> = ws.iter().map(|r| &r[shift..]).collect();
                    let mut packed = vec![0u8; pack_bytes(n) + shift];
                    for toks in 1..=TOKS {
                        let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| &r[shift..]).collect();
                        pack(n, &xr, &mut packed[shift..]);
                        let mut out = vec![0f32; ROWS * toks];
                        tile_avx512(n, &wr, &vec![&packed[shift..]; toks], &mut out);
                        for t in 0..toks {
                            for r in 0..ROWS {
                                let want = one(n, wr[r], xr[t]);
                                assert_eq!(
                                    out[t * ROWS + r].to_bits(),
                                    want.to_bits(),
                                    "case {case} nb={nb} shift={shift} toks={toks} t={t} r={r}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::testkit::simd::Rng;
    use std::time::Instant;

    /// Not a check: `cargo test --release -p torchless-quant q8_0_lane_tile_timing --
    /// --ignored --nocapture` prints ns per weight row and token of this tile and of the
    /// pair tile on an output-projection-like matrix (4096 x 576), alternating the two.
    #[test]
    #[ignore]
    fn q8_0_lane_tile_timing() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let (rows, n) = (4096usize, 576usize);
        let nb = n / 32;
        let mut rng = Rng::new(1);
        let mut rand = |len: usize| -> Vec<u8> {
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8 & 0x7f).collect();
            for b in v.chunks_exact_mut(BYTES) {
                b[..2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            }
            v
        };
        let w = rand(rows * nb * BYTES);
        let x = rand(16 * nb * BYTES);
        let xr: Vec<&[u8]> = x.chunks_exact(nb * BYTES).collect();
        let row = |i: usize| &w[i * nb * BYTES..(i + 1) * nb * BYTES];
        let mut out = [0f32; 64];
        for m in [8usize, 10, 12, 16] {
            let mut packed = vec![0u8; pack_bytes(n)];
            pack(n, &xr[..m], &mut packed);
            let (mut lanes, mut pairs) = (f64::MAX, f64::MAX);
            for _ in 0..30 {
                let t0 = Instant::now();
                for r in (0..rows).step_by(ROWS) {
                    let ws = [row(r), row(r + 1), row(r + 2), row(r + 3)];
                    tile_avx512(n, &ws, &vec![packed.as_slice(); m], &mut out);
                }
                lanes = lanes.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                for r in (0..rows).step_by(4) {
                    let ws = [row(r), row(r + 1), row(r + 2), row(r + 3)];
                    for t in (0..m).step_by(8) {
                        let k = 8.min(m - t);
                        super::super::tile_pairs::tile_q8_0(n, &ws, &xr[t..t + k], &mut out);
                    }
                }
                pairs = pairs.min(t0.elapsed().as_secs_f64());
            }
            let ns = |s: f64| s * 1e9 / (rows * m) as f64;
            println!(
                "m={m:>2}: lanes {:.2} ns, pairs {:.2} ns per row and token",
                ns(lanes),
                ns(pairs)
            );
        }
    }
}

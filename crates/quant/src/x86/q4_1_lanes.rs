//! Q4_1 x Q8_1 for batches of many tokens (AVX-512 VNNI), 16 tokens in the lanes of a
//! register, in the order of ggml's x86 `ggml_vec_dot_q4_1_q8_1` (the `avx512` single-row
//! kernel's, bit for bit).
//!
//! That order keeps, per (row, token), 8 float lanes: lane j accumulates, block after block,
//! `fma(d_w * d_x, float(sum of the products of codes 4j..4j+3), lane)`, and the offsets
//! `fma(m_w, s_x, summs)` go to a separate sum; at the end `hsum_float_8(lanes) + summs`.
//! The lanes never mix before the end, so they need not sit side by side: here register j of
//! a weight row holds lane j of all 16 tokens. The activations are packed once per matmul
//! with the tokens interleaved (`pack`), so a weight row's four codes of lane j are broadcast
//! against the matching four activations of every token in one `vpdpbusd`, one multiply
//! gives `d_w * d_x` of all 16 tokens, and the final `hsum_float_8` is three vector adds per
//! row in the same tree. Compared with the pair tile (`tile_pairs`) this drops the per-pair
//! scale shuffles and the horizontal reductions.
//!
//! The integer sums become floats without `vcvtdq2ps` (a few percent faster in
//! `lane_tile_timing`; on Intel cores the conversion competes with `vpdpbusd` for one port):
//! each `vpdpbusd` starts from the bits of 1.5 * 2^23, so the float read back is
//! exactly 1.5 * 2^23 + sum (|sum| < 2^22 always: 4 products of at most 255 * 128), and
//! subtracting 1.5 * 2^23 leaves exactly the converted sum.

use std::arch::x86_64::*;

use super::{bytes_from_nibbles_32, f16_pair};
use crate::q4_1::BYTES;
use crate::q8_1::BYTES as X_BYTES;

/// Weight rows per call (exactly). Each row runs on its own over the whole packed group
/// (which stays in L1): 8 lane registers per row leave no room for a second row's and the
/// activations, which are read as memory operands instead.
pub(crate) const ROWS: usize = 4;
/// Tokens per call (at most): the lanes of a 512-bit register.
pub(crate) const TOKS: usize = 16;

/// Bytes of one packed block of a token group: the 4 activations of lane j for token t at
/// `4 * (j * TOKS + t)`, then the 16 `d_x`, then the 16 `s_x`, as f32.
const PACK_BLOCK: usize = 4 * (8 * TOKS + 2 * TOKS);
const PACK_D: usize = 4 * 8 * TOKS;
const PACK_S: usize = PACK_D + 4 * TOKS;

/// 1.5 * 2^23 as f32 bits: adding an integer below 2^22 in magnitude to these bits gives the
/// float 1.5 * 2^23 + that integer, exactly.
pub(crate) const MAGIC: i32 = 0x4b40_0000;

/// How far ahead of the block in use the weight row is prefetched (a few rows: the rows of a
/// matrix follow each other). A row is a short stream which the hardware prefetcher picks
/// up late; asking for it ahead made a 16-sequence SmolLM2 step ~11% faster (one thread),
/// the same from 1 to 4 KiB. It is a hint: past the matrix's end it reads nothing.
pub(crate) const PF_DIST: usize = 2048;

/// Bytes of one packed token group for rows of `cols` values.
pub(crate) fn pack_bytes(cols: usize) -> usize {
    cols / 32 * PACK_BLOCK
}

/// Packs 1..=16 Q8_1 rows of `cols` values into one token group (missing tokens repeat the
/// last; their lanes are computed and never stored).
pub(crate) fn pack(cols: usize, xs: &[&[u8]], out: &mut [u8]) {
    let nb = cols / 32;
    assert!(
        cols.is_multiple_of(32)
            && !xs.is_empty()
            && xs.len() <= TOKS
            && out.len() >= nb * PACK_BLOCK
            && xs.iter().all(|x| x.len() >= nb * X_BYTES),
        "Q4_1 lane tile pack: {} tokens of {cols} values into {} bytes",
        xs.len(),
        out.len()
    );
    for (i, o) in out[..nb * PACK_BLOCK]
        .chunks_exact_mut(PACK_BLOCK)
        .enumerate()
    {
        for t in 0..TOKS {
            let b = &xs[t.min(xs.len() - 1)][i * X_BYTES..(i + 1) * X_BYTES];
            for (j, q) in b[4..].chunks_exact(4).enumerate() {
                o[4 * (j * TOKS + t)..][..4].copy_from_slice(q);
            }
            let f = |at: usize| half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
            o[PACK_D + 4 * t..][..4].copy_from_slice(&f(0).to_le_bytes());
            o[PACK_S + 4 * t..][..4].copy_from_slice(&f(2).to_le_bytes());
        }
    }
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
            && xs[0].len() >= nb * PACK_BLOCK,
        "Q4_1 lane tile: {} rows x {} tokens of {cols} values",
        ws.len(),
        xs.len()
    );
    assert!(super::has_avx512(), "Q4_1 lane tile needs AVX-512 VNNI");
    let w = [
        ws[0].as_ptr(),
        ws[1].as_ptr(),
        ws[2].as_ptr(),
        ws[3].as_ptr(),
    ];
    // SAFETY: AVX-512 VNNI was checked above; every row holds `nb` blocks and the packed
    // group `nb` packed blocks, `out` room for `xs.len()` tokens (asserted).
    unsafe { tile_vnni(nb, w, xs[0].as_ptr(), xs.len(), out) }
}

/// The four rows one after another, their results kept in registers up to the store
/// (returned from a call they go through memory, and reading them back lane by lane
/// waits on store forwarding).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; every row must hold `nb` Q4_1 blocks, `xp` `nb`
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
    store_rows(res, m, out)
}

/// The four rows' results (row r's tokens in the lanes of `res[r]`) written to
/// `out[t * 4 + r]` for tokens below `m`: transposed in registers, stored with masks.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn store_rows(res: [__m512; ROWS], m: usize, out: &mut [f32]) {
    assert!(ROWS == 4 && m <= TOKS && out.len() >= m * ROWS);
    let (pd, ps) = (_mm512_castps_pd, _mm512_castpd_ps);
    // Within each 128-bit lane l: `ab`/`cd` interleave rows 0-1 / 2-3, and `tk[k]` holds
    // token 4l + k's four rows.
    let ab = [
        pd(_mm512_unpacklo_ps(res[0], res[1])),
        pd(_mm512_unpackhi_ps(res[0], res[1])),
    ];
    let cd = [
        pd(_mm512_unpacklo_ps(res[2], res[3])),
        pd(_mm512_unpackhi_ps(res[2], res[3])),
    ];
    let tk = [
        ps(_mm512_unpacklo_pd(ab[0], cd[0])),
        ps(_mm512_unpackhi_pd(ab[0], cd[0])),
        ps(_mm512_unpacklo_pd(ab[1], cd[1])),
        ps(_mm512_unpackhi_pd(ab[1], cd[1])),
    ];
    // Output vector h holds tokens 4h..4h + 4: lane h of tk[0..4].
    let lo = [
        _mm512_shuffle_f32x4::<0b01_00_01_00>(tk[0], tk[1]),
        _mm512_shuffle_f32x4::<0b01_00_01_00>(tk[2], tk[3]),
    ];
    let hi = [
        _mm512_shuffle_f32x4::<0b11_10_11_10>(tk[0], tk[1]),
        _mm512_shuffle_f32x4::<0b11_10_11_10>(tk[2], tk[3]),
    ];
    let v = [
        _mm512_shuffle_f32x4::<0b10_00_10_00>(lo[0], lo[1]),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(lo[0], lo[1]),
        _mm512_shuffle_f32x4::<0b10_00_10_00>(hi[0], hi[1]),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(hi[0], hi[1]),
    ];
    super::tile_pairs::write_tile(&v, m, out)
}

/// One weight row against a packed group: the 16 tokens' results, in the lanes.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `w` must hold `nb` Q4_1 blocks and `xp` `nb`
/// packed blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn row_vnni(nb: usize, w: *const u8, xp: *const u8) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut summs = _mm512_setzero_ps();
    let magic = _mm512_set1_epi32(MAGIC);
    let magic_f = _mm512_castsi512_ps(magic);
    let mut codes = [0i32; 8];
    // SAFETY (whole loop): block `i` < `nb` of the row and of the packed group is in bounds
    // (the caller's contract); `codes` is read within its length; loads are unaligned.
    unsafe {
        for i in 0..nb {
            let p = xp.add(i * PACK_BLOCK);
            let bw = w.add(i * BYTES);
            // A hint only: no fault, whatever the address (see `PF_DIST`).
            _mm_prefetch::<_MM_HINT_T0>(bw.wrapping_add(PF_DIST) as *const i8);
            let dm = f16_pair(bw);
            let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
            let sx = _mm512_loadu_ps(p.add(PACK_S) as *const f32);
            summs = _mm512_fmadd_ps(m, sx, summs);
            // d_w * d_x, rounded as ggml's scalar product, for every token at once.
            let dx = _mm512_loadu_ps(p.add(PACK_D) as *const f32);
            let d = _mm512_mul_ps(_mm512_broadcastss_ps(dm), dx);
            // The 32 codes through memory: each lane's four are then one broadcast load.
            _mm256_storeu_si256(
                codes.as_mut_ptr() as *mut __m256i,
                bytes_from_nibbles_32(bw.add(4)),
            );
            for (j, acc) in acc.iter_mut().enumerate() {
                let y = _mm512_loadu_si512(p.add(64 * j) as *const __m512i);
                let c = broadcast_dword(codes.as_ptr().add(j));
                let s = _mm512_dpbusd_epi32(magic, c, y);
                let f = _mm512_sub_ps(_mm512_castsi512_ps(s), magic_f);
                *acc = _mm512_fmadd_ps(d, f, *acc);
            }
        }
    }
    // hsum_float_8's tree: lanes four apart, then two apart, then the last two.
    let t: [__m512; 4] = std::array::from_fn(|k| _mm512_add_ps(acc[k + 4], acc[k]));
    let u = [_mm512_add_ps(t[0], t[2]), _mm512_add_ps(t[1], t[3])];
    _mm512_add_ps(_mm512_add_ps(u[0], u[1]), summs)
}

/// The i32 at `p` in every lane, as a load (`vpbroadcastd` from memory runs on a load port
/// only; left to itself LLVM forwards the codes' store and broadcasts from a register with
/// two shuffles per lane on the port the kernel needs).
///
/// # Safety
/// `p` must be readable for 4 bytes; AVX-512 F must be available.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn broadcast_dword(p: *const i32) -> __m512i {
    let v: __m512i;
    // SAFETY: a 4-byte read at `p` (caller), no other effect.
    unsafe {
        std::arch::asm!(
            "vpbroadcastd {v}, dword ptr [{p}]",
            v = out(zmm_reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags)
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, kernel, SimdLevel};
    use crate::testkit::simd::Rng;
    use crate::GgmlType;

    /// Every token count equals the single-row `avx512` kernel bit for bit, on random
    /// blocks, extreme quants (-128 activations, all-ones codes), f16 scales and offsets at
    /// the range ends (largest, subnormal, zeros) and rows at odd addresses.
    #[test]
    fn tile_equals_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let one = kernel(GgmlType::Q4_1, SimdLevel::Avx512).unwrap();
        let mut rng = Rng::new(41);
        for case in 0..5 {
            for nb in [1usize, 3, 7, 18] {
                for shift in [0usize, 1] {
                    let n = nb * 32;
                    let mut row = |bytes: usize| -> Vec<u8> {
                        let mut r: Vec<u8> =
                            (0..shift + nb * bytes).map(|_| rng.next() as u8).collect();
                        for b in r[shift..].chunks_exact_mut(bytes) {
                            for f in 0..2 {
                                let d: u16 = match case {
                                    0 | 1 => half::f16::from_f32(rng.normal() * 0.02).to_bits(),
                                    2 => 0x7bff | ((rng.next() as u16 & 1) << 15),
                                    3 => 1 + rng.below(0x3ff) as u16,
                                    _ => [0u16, 0x8000, 0x3c00][rng.below(3) as usize],
                                };
                                b[2 * f..2 * f + 2].copy_from_slice(&d.to_le_bytes());
                            }
                            if case == 1 {
                                for q in &mut b[4..] {
                                    *q = [0x80u8, 0x7f, 0xff, 0][rng.below(4) as usize];
                                }
                            }
                        }
                        r
                    };
                    let ws: Vec<Vec<u8>> = (0..ROWS).map(|_| row(BYTES)).collect();
                    let xs: Vec<Vec<u8>> = (0..TOKS).map(|_| row(X_BYTES)).collect();
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

    /// Not a check: `cargo test --release -p torchless-quant lane_tile_timing -- --ignored
    /// --nocapture` prints ns per weight row and token of this tile and of the pair tile on
    /// an FFN-sized matrix (1536 x 576), alternating the two.
    #[test]
    #[ignore]
    fn lane_tile_timing() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let (rows, n) = (1536usize, 576usize);
        let nb = n / 32;
        let mut rng = Rng::new(1);
        let mut rand = |len: usize| -> Vec<u8> {
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for b in v.chunks_exact_mut(2) {
                b.copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            }
            v
        };
        let w = rand(rows * nb * BYTES);
        let x = rand(16 * nb * X_BYTES);
        let xr: Vec<&[u8]> = x.chunks_exact(nb * X_BYTES).collect();
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
                        super::super::tile_pairs::tile_q4_1(n, &ws, &xr[t..t + k], &mut out);
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

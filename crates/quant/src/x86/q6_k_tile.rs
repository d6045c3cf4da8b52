//! Q6_K x Q8_K in llama.cpp's tiled-matmul order (batches of 8+ tokens, see
//! `order::tiled_dot`), 16 weight rows by up to 16 tokens per call on AVX-512 VNNI.
//!
//! The tiled order keeps one f32 chain per output: per super-block, the exact integer sum
//! `isum = sum_j scale_j * (sum code*y - 32 * bsum_j)` becomes `f32(isum) * d_w`, added to
//! the chain by one FMA with the activation's `d` (`q6_k::dot_*::<_, true>`). Only the integer
//! sum is free to be computed in any order, so here the tokens sit in the lanes: each weight
//! row's block is unpacked to its 256 codes once per call, the activations are packed once per
//! matmul with the tokens interleaved (`pack`), four codes at a time are broadcast
//! against the four matching activations of every token (`vpdpbusd`), eight rows at a time
//! so that each activation load serves eight of them, and the chain runs lane by lane, no
//! horizontal sums. The results equal `vec_dot_tiled_avx512` bit for bit.

use std::arch::x86_64::*;

use super::f16_at;
use super::q4_k::{Y_BSUMS, Y_QS};
use super::q6_k::{W_D, W_QH, W_SCALES};
use crate::k_common::QK_K;
use crate::q6_k::BLOCK_BYTES;
use crate::q8_k::BLOCK_BYTES as Q8K_BYTES;

/// Weight rows per call (exactly).
pub(crate) const ROWS: usize = 16;
/// Weight rows that share each activation load. The kernel is bound by loads (a broadcast
/// code and a 64-byte activation vector per `vpdpbusd` when rows go one at a time); 1B Q6_K
/// prefill, same run: 153 t/s with one row, 187 with 2, 212 with 4, 219 with 8.
const SHARED_ROWS: usize = 8;
/// Tokens per call (at most): the lanes of a 512-bit register.
pub(crate) const TOKS: usize = 16;

/// Bytes of one packed block of a token group: the 4 activations of group g for token t as
/// one i32 at `g * TOKS + t`, then the 16 bsums as i32 at `j * TOKS + t`, then the 16 `d`s.
const PACK_BLOCK: usize = 4 * (QK_K / 4 * TOKS + QK_K / 16 * TOKS + TOKS);

/// Bytes of one packed token group for rows of `cols` values.
pub(crate) fn pack_bytes(cols: usize) -> usize {
    cols / QK_K * PACK_BLOCK
}

/// Packs 1..=16 Q8_K rows of `cols` values into one token group (missing tokens repeat the
/// last; their lanes are computed and never stored).
pub(crate) fn pack(cols: usize, xs: &[&[u8]], out: &mut [u8]) {
    let nb = cols / QK_K;
    assert!(
        cols.is_multiple_of(QK_K)
            && !xs.is_empty()
            && xs.len() <= TOKS
            && out.len() >= nb * PACK_BLOCK
            && xs.iter().all(|x| x.len() >= nb * Q8K_BYTES),
        "Q6_K tile pack: {} tokens of {cols} values into {} bytes",
        xs.len(),
        out.len()
    );
    let put = |out: &mut [u8], at: usize, v: [u8; 4]| out[at..at + 4].copy_from_slice(&v);
    for i in 0..nb {
        let o = &mut out[i * PACK_BLOCK..(i + 1) * PACK_BLOCK];
        for t in 0..TOKS {
            let yb = &xs[t.min(xs.len() - 1)][i * Q8K_BYTES..(i + 1) * Q8K_BYTES];
            for g in 0..QK_K / 4 {
                let q = &yb[Y_QS + 4 * g..Y_QS + 4 * g + 4];
                put(o, 4 * (g * TOKS + t), [q[0], q[1], q[2], q[3]]);
            }
            for j in 0..QK_K / 16 {
                let b = i16::from_le_bytes([yb[Y_BSUMS + 2 * j], yb[Y_BSUMS + 2 * j + 1]]);
                put(
                    o,
                    4 * (QK_K / 4 * TOKS + j * TOKS + t),
                    (b as i32).to_le_bytes(),
                );
            }
            put(
                o,
                4 * (QK_K / 4 * TOKS + QK_K / 16 * TOKS + t),
                [yb[0], yb[1], yb[2], yb[3]],
            );
        }
    }
}

/// `ws` (16 rows of `cols` values) times one packed group of `xs.len()` (1..=16) tokens
/// (every entry of `xs` is the group, see [`pack`]): `out[t * 16 + r]`.
pub(crate) fn tile_avx512(cols: usize, ws: &[&[u8]], xs: &[&[u8]], out: &mut [f32]) {
    let nb = cols / QK_K;
    assert!(
        cols.is_multiple_of(QK_K)
            && ws.len() == ROWS
            && !xs.is_empty()
            && xs.len() <= TOKS
            && out.len() >= xs.len() * ROWS
            && ws.iter().all(|w| w.len() >= nb * BLOCK_BYTES)
            && xs[0].len() >= nb * PACK_BLOCK,
        "Q6_K tile: {} rows x {} tokens of {cols} values",
        ws.len(),
        xs.len()
    );
    assert!(super::has_avx512(), "Q6_K tile needs AVX-512 VNNI");
    // SAFETY: AVX-512 VNNI was checked above; every row holds `nb` blocks and the packed
    // group `nb` packed blocks (asserted).
    unsafe { tile_vnni(nb, ws, xs[0], xs.len(), out) }
}

/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; every `ws` row `nb` Q6_K blocks, `xp` `nb`
/// packed blocks, `out` at least `nt * ROWS` values, `nt <= TOKS`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni(nb: usize, ws: &[&[u8]], xp: &[u8], nt: usize, out: &mut [f32]) {
    let mut acc = [_mm512_setzero_ps(); ROWS];
    let mut codes = [[0u8; QK_K]; SHARED_ROWS];
    // SAFETY (whole body): block `i` < `nb` of every row and of the packed group is in
    // bounds (the caller's contract); `codes` is indexed within its length; loads are
    // unaligned.
    unsafe {
        for i in 0..nb {
            let p = xp.as_ptr().add(i * PACK_BLOCK);
            let ys = p as *const i32;
            let bs = ys.add(QK_K / 4 * TOKS);
            let ydv = _mm512_loadu_ps(bs.add(QK_K / 16 * TOKS) as *const f32);
            for r in (0..ROWS).step_by(SHARED_ROWS) {
                let wbs: [*const u8; SHARED_ROWS] =
                    std::array::from_fn(|k| ws[r + k].as_ptr().add(i * BLOCK_BYTES));
                for (c, wb) in codes.iter_mut().zip(wbs) {
                    for h in 0..2 {
                        let ld = |off: usize| _mm256_loadu_si256(wb.add(off) as *const __m256i);
                        let q = super::q6_k::unpack_codes(
                            ld(64 * h),
                            ld(64 * h + 32),
                            ld(W_QH + 32 * h),
                        );
                        for (k, q) in q.iter().enumerate() {
                            _mm256_storeu_si256(
                                c.as_mut_ptr().add(128 * h + 32 * k) as *mut __m256i,
                                *q,
                            );
                        }
                    }
                }
                let mut isum = [_mm512_setzero_si512(); SHARED_ROWS];
                for j in 0..QK_K / 16 {
                    let b = _mm512_loadu_si512(bs.add(j * TOKS) as *const __m512i);
                    let s0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<5>(b));
                    let mut s = [s0; SHARED_ROWS];
                    for g in 4 * j..4 * j + 4 {
                        let y = _mm512_loadu_si512(ys.add(g * TOKS) as *const __m512i);
                        for k in 0..SHARED_ROWS {
                            let w = _mm512_set1_epi32(
                                (codes[k].as_ptr().add(4 * g) as *const i32).read_unaligned(),
                            );
                            s[k] = _mm512_dpbusd_epi32(s[k], w, y);
                        }
                    }
                    for k in 0..SHARED_ROWS {
                        let sc = *(wbs[k].add(W_SCALES + j) as *const i8) as i32;
                        isum[k] = _mm512_add_epi32(
                            isum[k],
                            _mm512_mullo_epi32(s[k], _mm512_set1_epi32(sc)),
                        );
                    }
                }
                for k in 0..SHARED_ROWS {
                    let t = _mm512_mul_ps(
                        _mm512_cvtepi32_ps(isum[k]),
                        _mm512_set1_ps(f16_at(wbs[k].add(W_D))),
                    );
                    acc[r + k] = _mm512_fmadd_ps(t, ydv, acc[r + k]);
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let mut lanes = [0f32; TOKS];
        // SAFETY: `lanes` holds 16 floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
        for (t, v) in lanes[..nt].iter().enumerate() {
            out[t * ROWS + r] = *v;
        }
    }
}

//! AVX-512 tiles for Q8_0, Q5_0, Q4_1 and Q5_1 batches in `vec_dot` order (ggml's x86
//! `ggml_vec_dot_q{8,5}_0_q8_0`, which llamafile's sgemm matches, and
//! `ggml_vec_dot_q{4,5}_1_q8_1`, which ggml's `mul_mat` calls per output since sgemm does
//! not take those types): two tokens share a 512-bit
//! register (token 2p in the low half, 2p + 1 in the high half) against the same weight
//! block, so the integer products, conversions and fused multiply-adds of two (row, token)
//! pairs take one instruction each. Every pair keeps its own 8-lane accumulator (one half of
//! a register) and its own `hsum_float_8`, so each result is exactly the single-row kernel's.

use std::arch::x86_64::*;

use super::{f16_at, f16_pair};

/// Weight rows and most tokens per call: 16 accumulators, with the four token pairs' quants
/// and scales, fill most of the 32 vector registers.
pub(crate) const ROWS: usize = 4;
pub(crate) const TOKS: usize = 8;

/// Q8_0 weight quants of the block at `b`, in both halves of a 512-bit register.
///
/// # Safety
/// `b` must point at a readable Q8_0 block.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn quants_q8_0(b: *const u8) -> __m512i {
    // SAFETY: 32 quant bytes follow the 2-byte scale (caller).
    _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(b.add(2) as *const __m256i) })
}

/// Q5_0 weight quants of the block at `b` in both halves, as ggml's AVX2 kernel forms them:
/// nibbles with bit 4 from `qh`, offset to [-16, 15] by setting the high bits where `qh` is
/// clear (the clear bits used as a byte mask, repeated for the high half).
///
/// # Safety
/// `b` must point at a readable Q5_0 block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quants_q5_0(b: *const u8) -> __m512i {
    // SAFETY: the block holds 4 `qh` bytes after the scale and 16 nibble bytes after them.
    unsafe {
        let clear = !(b.add(2) as *const u32).read_unaligned() as u64;
        let nib = nibbles_512(b.add(6));
        // nib + 0xf0 = nib | 0xf0, as the nibble is below 16.
        _mm512_mask_add_epi8(
            nib,
            clear | (clear << 32),
            nib,
            _mm512_set1_epi8(0xf0u8 as i8),
        )
    }
}

macro_rules! kernel {
    ($name:ident, $tile:ident, $bytes:expr, $quants:ident) => {
        /// # Safety
        /// The CPU must have AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C); each of the `ROWS`
        /// weight rows and `2 * P` activation rows must hold `nb` blocks. Result `[r][p]`
        /// holds row `r` against tokens `2p` (low half) and `2p + 1` (high half).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const P: usize>(
            nb: usize,
            w: [*const u8; ROWS],
            x: [[*const u8; 2]; P],
        ) -> [[__m512; P]; ROWS] {
            let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
            // Lanes past the last pair read token 0 again (nobody reads them).
            let tok: [*const u8; 8] =
                std::array::from_fn(|t| if t / 2 < P { x[t / 2][t % 2] } else { x[0][0] });
            // Pair p's `d_x`: token 2p's (lane 2p) in the low half, 2p + 1's in the high.
            let pick: [__m512i; P] = std::array::from_fn(|p| {
                _mm512_mask_blend_epi32(
                    0xff00,
                    _mm512_set1_epi32(2 * p as i32),
                    _mm512_set1_epi32(2 * p as i32 + 1),
                )
            });
            for i in 0..nb {
                let off = i * X_BYTES;
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    // The eight tokens' scales widened in one conversion (token t in lane t).
                    let d8 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_setr_epi16(
                        d_bits(tok[0].add(off)),
                        d_bits(tok[1].add(off)),
                        d_bits(tok[2].add(off)),
                        d_bits(tok[3].add(off)),
                        d_bits(tok[4].add(off)),
                        d_bits(tok[5].add(off)),
                        d_bits(tok[6].add(off)),
                        d_bits(tok[7].add(off)),
                    )));
                    let mut y = [_mm512_setzero_si512(); P];
                    let mut dx = [_mm512_setzero_ps(); P];
                    for (((y, dx), [a, b]), pick) in
                        y.iter_mut().zip(dx.iter_mut()).zip(x).zip(pick)
                    {
                        let (ba, bb) = (a.add(off), b.add(off));
                        *y = _mm512_inserti64x4(
                            _mm512_castsi256_si512(_mm256_loadu_si256(ba.add(2) as *const __m256i)),
                            _mm256_loadu_si256(bb.add(2) as *const __m256i),
                            1,
                        );
                        *dx = _mm512_permutexvar_ps(pick, d8);
                    }
                    for (acc, wr) in acc.iter_mut().zip(w) {
                        let bw = wr.add(i * $bytes);
                        let dw = _mm512_set1_ps(f16_at(bw));
                        let q = $quants(bw);
                        // ggml's sign trick, bit for bit (including its wrap of -(-128)):
                        // |w| times y negated where w < 0.
                        let (aq, neg) = (_mm512_abs_epi8(q), _mm512_movepi8_mask(q));
                        for ((acc, y), dx) in acc.iter_mut().zip(y).zip(dx) {
                            let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aq, sy);
                            // d_w * d_x per half, as ggml rounds the scalar product.
                            let d = _mm512_mul_ps(dw, dx);
                            *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), *acc);
                        }
                    }
                }
            }
            acc
        }

        /// `ROWS` weight rows times one to `TOKS` Q8_0 activation rows (see
        /// [`crate::dispatch::TileFn`]), each result bit-identical to the `avx512` single-row
        /// kernel of the format.
        pub(crate) fn $tile(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, 32, w, $bytes, x, X_BYTES, out, ROWS, TOKS);
            let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
            // An odd last token is paired with itself; its copy is dropped.
            let xp = |i: usize| x[i.min(x.len() - 1)].as_ptr();
            let pair = |p: usize| [xp(2 * p), xp(2 * p + 1)];
            let m = x.len();
            // SAFETY: only reachable through the dispatch table after AVX-512 VNNI
            // detection; `blocks_tile` checked every length and the tile shape.
            unsafe {
                match m.div_ceil(2) {
                    1 => store($name(nb, wp, [pair(0)]), m, out),
                    2 => store($name(nb, wp, [pair(0), pair(1)]), m, out),
                    3 => store($name(nb, wp, [pair(0), pair(1), pair(2)]), m, out),
                    _ => store($name(nb, wp, [pair(0), pair(1), pair(2), pair(3)]), m, out),
                }
            }
        }
    };
}

/// Every half-register accumulator reduced as ggml's `hsum_float_8` reduces it (lanes four
/// apart, then two apart, then the last two), 32 results at once: a tile's results in
/// `out` order, tokens 0-3 (`[t * ROWS + r]`) in the first register and 4-7 in the second.
/// Pairs past `P` reduce zeros. Float addition is commutative, so pairing the same lanes in
/// vectors gives the scalar tree's bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce_tile<const P: usize>(acc: &[[__m512; P]; ROWS]) -> [__m512; 2] {
    let a = |r: usize, p: usize| {
        if p < P {
            acc[r][p]
        } else {
            _mm512_setzero_ps()
        }
    };
    // Lanes four apart: 128-bit lanes [x.t, x.t', y.t, y.t'] of four partial sums each.
    let fours = |x: __m512, y: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xDD>(x, y),
        )
    };
    // Lanes two apart, then the last two: per 128-bit lane, two results of each input.
    let twos = |x: __m512, y: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(x, y),
            _mm512_shuffle_ps::<0xEE>(x, y),
        )
    };
    let ones = |x: __m512, y: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(x, y),
            _mm512_shuffle_ps::<0xDD>(x, y),
        )
    };
    std::array::from_fn(|half| {
        let (p0, p1) = (2 * half, 2 * half + 1);
        // 128-bit lane l of row r's sums: token 4 * half + l.
        let f: [__m512; ROWS] = std::array::from_fn(|r| fours(a(r, p0), a(r, p1)));
        ones(twos(f[0], f[1]), twos(f[2], f[3]))
    })
}

/// Writes a tile's results for tokens below `m` (`out[t * ROWS + r]`): vector `h` holds
/// tokens `4h..4h + 4`, four rows each (also the lane tiles' last step).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn write_tile(res: &[__m512], m: usize, out: &mut [f32]) {
    assert!(ROWS == 4 && m <= 4 * res.len() && out.len() >= m * ROWS);
    for (h, v) in res.iter().enumerate() {
        let t = m.saturating_sub(4 * h).min(4);
        let mask = ((1u32 << (ROWS * t)) - 1) as u16;
        if mask != 0 {
            // SAFETY: the mask covers lanes `16 * h..` below `m * ROWS`, inside `out`
            // (asserted above); masked-off lanes are not touched.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(16 * h), mask, *v) };
        }
    }
}

/// Each half-register accumulator reduced into `out[t * ROWS + r]`, for tokens below `m`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store<const P: usize>(acc: [[__m512; P]; ROWS], m: usize, out: &mut [f32]) {
    write_tile(&reduce_tile(&acc), m, out)
}

const X_BYTES: usize = crate::q8_0::BYTES;

kernel!(gemm_q8_0, tile_q8_0, crate::q8_0::BYTES, quants_q8_0);
kernel!(gemm_q5_0, tile_q5_0, crate::q5_0::BYTES, quants_q5_0);

/// The 16 nibble bytes at `p` as ggml's 32 quants (low nibbles, then high ones), in both
/// halves of a 512-bit register: the bytes broadcast to four 128-bit lanes (a plain load),
/// the odd lanes shifted down by 4, every byte masked to its nibble.
///
/// # Safety
/// `p` must be readable for 16 bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn nibbles_512(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
    let b = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(p as *const __m128i) });
    let shifted = _mm512_srlv_epi64(b, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f))
}

/// Q4_1 weight quants of the block at `b` (its nibbles, in [0, 15]) in both halves.
///
/// # Safety
/// `b` must point at a readable Q4_1 block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quants_q4_1(b: *const u8) -> __m512i {
    // SAFETY: 16 nibble bytes follow the 4 bytes of `d` and `m` (caller).
    unsafe { nibbles_512(b.add(4)) }
}

/// Q5_1 weight quants of the block at `b` in both halves, as ggml's AVX2 kernel forms them:
/// the nibble plus 16 where the bit in `qh` is set, in [0, 31] (the bits used as a byte mask,
/// repeated for the high half).
///
/// # Safety
/// `b` must point at a readable Q5_1 block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quants_q5_1(b: *const u8) -> __m512i {
    // SAFETY: the block holds 4 `qh` bytes after `d` and `m`, and 16 nibble bytes after them.
    unsafe {
        let qh = (b.add(4) as *const u32).read_unaligned() as u64;
        let nib = nibbles_512(b.add(8));
        // nib + 16 = nib | 16, as the nibble is below 16.
        _mm512_mask_add_epi8(nib, qh | (qh << 32), nib, _mm512_set1_epi8(0x10))
    }
}

/// The f16 scale of a Q8_0 activation block, as raw bits.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline]
unsafe fn d_bits(p: *const u8) -> i16 {
    // SAFETY: caller; unaligned read.
    unsafe { (p as *const i16).read_unaligned() }
}

/// Q8_1 activation block size (`d`, `s`, 32 quants).
const X1_BYTES: usize = crate::q8_1::BYTES;

/// The (`d`, `s`) f16 pair of an activation block, as raw bits.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[inline]
unsafe fn ds_bits(p: *const u8) -> i32 {
    // SAFETY: caller; unaligned read.
    unsafe { (p as *const i32).read_unaligned() }
}

/// Tiles for the formats with an offset (Q4_1 and Q5_1 against Q8_1), in the order of
/// ggml's x86 `ggml_vec_dot_q{4,5}_1_q8_1`: per block `acc += (d_w * d_x) * float(sum of
/// the 32 products)` in 8 lanes, and separately `summs = fma(m_w, s_x, summs)`; at the end
/// `hsum_float_8(acc) + summs`. Token pairs share a register as in the Q8_0 tile. The
/// activations' `d` and `s` of all eight tokens are widened in one conversion (token t's in
/// lanes 2t and 2t + 1); each weight row's `summs` for all eight tokens is one register
/// (lane 2t + 1 holds token t's; the even lanes compute values nobody reads), and each
/// pair's `d_x` halves are picked out of the same register.
macro_rules! kernel_offset {
    ($name:ident, $tile:ident, $bytes:expr, $quants:ident) => {
        /// # Safety
        /// The CPU must have AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C); each of the `ROWS`
        /// weight rows and `2 * P` activation rows must hold `nb` blocks. Result `[r][p]`
        /// holds row `r` against tokens `2p` (low half) and `2p + 1` (high half); the second
        /// result row `r`'s offset sums (token t in lane 2t + 1).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name<const P: usize>(
            nb: usize,
            w: [*const u8; ROWS],
            x: [[*const u8; 2]; P],
        ) -> ([[__m512; P]; ROWS], [__m512; ROWS]) {
            let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
            let mut summs = [_mm512_setzero_ps(); ROWS];
            // Lanes past the last pair read token 0 again (nobody reads their results).
            let tok: [*const u8; 8] =
                std::array::from_fn(|t| if t / 2 < P { x[t / 2][t % 2] } else { x[0][0] });
            // Pair p's `d_x`: token 2p's (lane 4p) in the low half, 2p + 1's in the high.
            let pick: [__m512i; P] = std::array::from_fn(|p| {
                _mm512_mask_blend_epi32(
                    0xff00,
                    _mm512_set1_epi32(4 * p as i32),
                    _mm512_set1_epi32(4 * p as i32 + 2),
                )
            });
            for i in 0..nb {
                let off = i * X1_BYTES;
                // SAFETY: block i of each row is in bounds (caller), and the offsets stay
                // inside a block.
                unsafe {
                    let ds = _mm512_cvtph_ps(_mm256_setr_epi32(
                        ds_bits(tok[0].add(off)),
                        ds_bits(tok[1].add(off)),
                        ds_bits(tok[2].add(off)),
                        ds_bits(tok[3].add(off)),
                        ds_bits(tok[4].add(off)),
                        ds_bits(tok[5].add(off)),
                        ds_bits(tok[6].add(off)),
                        ds_bits(tok[7].add(off)),
                    ));
                    let mut y = [_mm512_setzero_si512(); P];
                    for (y, [a, b]) in y.iter_mut().zip(x) {
                        let (ba, bb) = (a.add(off), b.add(off));
                        *y = _mm512_inserti64x4(
                            _mm512_castsi256_si512(_mm256_loadu_si256(ba.add(4) as *const __m256i)),
                            _mm256_loadu_si256(bb.add(4) as *const __m256i),
                            1,
                        );
                    }
                    for ((acc, summs), wr) in acc.iter_mut().zip(summs.iter_mut()).zip(w) {
                        let bw = wr.add(i * $bytes);
                        let dm = f16_pair(bw);
                        let dw = _mm512_broadcastss_ps(dm);
                        let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
                        *summs = _mm512_fmadd_ps(m, ds, *summs);
                        // d_w * d_x of every token (lane 2t), rounded as ggml's scalar
                        // product, then moved to the halves of each pair: one multiply
                        // per row instead of one per pair, the rest on the shuffle port.
                        let dd = _mm512_mul_ps(dw, ds);
                        let q = $quants(bw);
                        for ((acc, y), pick) in acc.iter_mut().zip(y).zip(pick) {
                            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y);
                            let d = _mm512_permutexvar_ps(pick, dd);
                            *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), *acc);
                        }
                    }
                }
            }
            (acc, summs)
        }

        /// `ROWS` weight rows times one to `TOKS` Q8_1 activation rows (see
        /// [`crate::dispatch::TileFn`]), each result bit-identical to the `avx512` single-row
        /// kernel of the format.
        pub(crate) fn $tile(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, 32, w, $bytes, x, X1_BYTES, out, ROWS, TOKS);
            let wp: [*const u8; ROWS] = std::array::from_fn(|i| w[i].as_ptr());
            // An odd last token is paired with itself; its copy is dropped.
            let xp = |i: usize| x[i.min(x.len() - 1)].as_ptr();
            let pair = |p: usize| [xp(2 * p), xp(2 * p + 1)];
            let m = x.len();
            // SAFETY: only reachable through the dispatch table after AVX-512 VNNI
            // detection; `blocks_tile` checked every length and the tile shape.
            unsafe {
                match m.div_ceil(2) {
                    1 => store_offset($name(nb, wp, [pair(0)]), m, out),
                    2 => store_offset($name(nb, wp, [pair(0), pair(1)]), m, out),
                    3 => store_offset($name(nb, wp, [pair(0), pair(1), pair(2)]), m, out),
                    _ => store_offset($name(nb, wp, [pair(0), pair(1), pair(2), pair(3)]), m, out),
                }
            }
        }
    };
}

/// [`store`] plus each result's offset sum: `hsum_float_8(acc) + summs`, as ggml ends.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_offset<const P: usize>(
    (acc, summs): ([[__m512; P]; ROWS], [__m512; ROWS]),
    m: usize,
    out: &mut [f32],
) {
    let sums = reduce_tile(&acc);
    // Row r's offset of token t is lane 2t + 1 of `summs[r]`: rows 0-1 and 2-3 gathered
    // (row, token)-major, then moved to `out`'s (token, row) order.
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let r01 = _mm512_permutex2var_ps(summs[0], odd, summs[1]);
    let r23 = _mm512_permutex2var_ps(summs[2], odd, summs[3]);
    let res: [__m512; 2] = std::array::from_fn(|h| {
        let idx: [i32; 16] = std::array::from_fn(|l| {
            let (t, r) = (4 * h + l / 4, l % 4);
            (r % 2 * 8 + t) as i32 + if r < 2 { 0 } else { 16 }
        });
        // SAFETY: reads 16 i32 from a 16-element array.
        let idx = unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
        _mm512_add_ps(sums[h], _mm512_permutex2var_ps(r01, idx, r23))
    });
    write_tile(&res, m, out)
}

kernel_offset!(gemm_q4_1, tile_q4_1, crate::q4_1::BYTES, quants_q4_1);
kernel_offset!(gemm_q5_1, tile_q5_1, crate::q5_1::BYTES, quants_q5_1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, kernel, SimdLevel, TileFn};
    use crate::testkit::simd::Rng;
    use crate::GgmlType;

    /// Every tile shape equals the single-row `avx512` kernel bit for bit, on random blocks,
    /// extreme quants (-128 on both sides, where ggml's sign trick wraps) and f16 scales (and
    /// offsets / activation sums) at the range ends; rows at odd addresses as well as
    /// aligned ones.
    #[test]
    fn tiles_equal_the_single_row_kernel() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let mut rng = Rng::new(55);
        let cases: [(GgmlType, TileFn, usize, usize); 4] = [
            (GgmlType::Q8_0, tile_q8_0, ROWS, TOKS),
            (GgmlType::Q5_0, tile_q5_0, ROWS, TOKS),
            (GgmlType::Q4_1, tile_q4_1, ROWS, TOKS),
            (GgmlType::Q5_1, tile_q5_1, ROWS, TOKS),
        ];
        for (ty, tile, rows, toks_max) in cases {
            let one = kernel(ty, SimdLevel::Avx512).unwrap();
            let xty = ty.vec_dot_type();
            // f16 fields at the start of a block: d, and m (weights) or s (activations).
            let fields = |t: GgmlType| match t {
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => 2,
                _ => 1,
            };
            for case in 0..5 {
                for nb in [1usize, 3, 18, 48] {
                    for shift in [0usize, 1] {
                        let n = nb * 32;
                        // A row of `t` blocks starting `shift` bytes into its buffer.
                        let mut row = |t: GgmlType| -> Vec<u8> {
                            let bytes = t.type_size();
                            let mut r: Vec<u8> =
                                (0..shift + nb * bytes).map(|_| rng.next() as u8).collect();
                            for b in r[shift..].chunks_exact_mut(bytes) {
                                for f in 0..fields(t) {
                                    let d: u16 = match case {
                                        0 | 1 => half::f16::from_f32(rng.normal() * 0.02).to_bits(),
                                        2 => 0x7bff | ((rng.next() as u16 & 1) << 15),
                                        3 => 1 + rng.below(0x3ff) as u16,
                                        _ => [0u16, 0x8000, 0x3c00][rng.below(3) as usize],
                                    };
                                    b[2 * f..2 * f + 2].copy_from_slice(&d.to_le_bytes());
                                }
                                if case == 1 {
                                    for q in &mut b[2 * fields(t)..] {
                                        *q = [0x80u8, 0x7f, 0x81, 0, 0xff][rng.below(5) as usize];
                                    }
                                }
                            }
                            r
                        };
                        let ws: Vec<Vec<u8>> = (0..rows).map(|_| row(ty)).collect();
                        let xs: Vec<Vec<u8>> = (0..toks_max).map(|_| row(xty)).collect();
                        let wr: Vec<&[u8]> = ws.iter().map(|r| &r[shift..]).collect();
                        for toks in 1..=toks_max {
                            let xr: Vec<&[u8]> = xs[..toks].iter().map(|r| &r[shift..]).collect();
                            let mut out = vec![0f32; rows * toks];
                            tile(n, &wr, &xr, &mut out);
                            for t in 0..toks {
                                for r in 0..rows {
                                    let want = one(n, wr[r], xr[t]);
                                    assert_eq!(
                                        out[t * rows + r].to_bits(),
                                        want.to_bits(),
                                        "{ty} case {case} nb={nb} shift={shift} toks={toks} \
                                         t={t} r={r}"
                                    );
                                }
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
    use crate::dispatch::{detected_level, SimdLevel, TileFn};
    use crate::testkit::simd::Rng;
    use std::time::Instant;

    /// Not a check: `cargo test --release -p torchless-quant tile_timing -- --ignored --nocapture`
    /// prints ns per weight row and token of each tile on an FFN-sized matrix (1536 x 576).
    #[test]
    #[ignore]
    fn tile_timing() {
        if detected_level() < SimdLevel::Avx512 {
            return;
        }
        let (rows, n) = (1536usize, 576usize);
        let nb = n / 32;
        let mut rng = Rng::new(1);
        let kinds: [(&str, usize, usize, TileFn, usize, usize); 5] = [
            (
                "q4_1 4x4",
                crate::q4_1::BYTES,
                X1_BYTES,
                crate::x86::q4_1::tile_avx512,
                4,
                4,
            ),
            (
                "q4_1 pairs",
                crate::q4_1::BYTES,
                X1_BYTES,
                tile_q4_1,
                4,
                TOKS,
            ),
            (
                "q5_1 4x4",
                crate::q5_1::BYTES,
                X1_BYTES,
                crate::x86::q5_1::tile_avx512,
                4,
                4,
            ),
            (
                "q5_1 pairs",
                crate::q5_1::BYTES,
                X1_BYTES,
                tile_q5_1,
                4,
                TOKS,
            ),
            (
                "q5_0 pairs",
                crate::q5_0::BYTES,
                X_BYTES,
                tile_q5_0,
                4,
                TOKS,
            ),
        ];
        for (name, wb, xb, tile, rw, toks) in kinds {
            let mut rand = |len: usize| -> Vec<u8> {
                let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                for b in v.chunks_exact_mut(2) {
                    b.copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                }
                v
            };
            let w = rand(rows * nb * wb);
            let x = rand(16 * nb * xb);
            let xr: Vec<&[u8]> = x.chunks_exact(nb * xb).collect();
            let mut out = [0f32; 64];
            for m in [1usize, 2, 4, 8, 16] {
                let mut best = f64::MAX;
                for _ in 0..30 {
                    let t0 = Instant::now();
                    for r in (0..rows).step_by(rw) {
                        let ws: Vec<&[u8]> = (r..r + rw)
                            .map(|i| &w[i * nb * wb..(i + 1) * nb * wb])
                            .collect();
                        for t in (0..m).step_by(toks) {
                            let k = toks.min(m - t);
                            tile(n, &ws, &xr[t..t + k], &mut out);
                        }
                    }
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                println!(
                    "{name:>10} m={m:>2}: {:>7.1} us, {:.2} ns per row and token",
                    best * 1e6,
                    best * 1e9 / (rows * m) as f64
                );
            }
        }
    }
}

//! Interleaved Q4_0 ([`crate::q4_0x8`]) times Q8_0 activations, in llama.cpp's repacked
//! order: per output one float accumulator, `acc = fma(isum, d_w * d_x, acc)` per block.
//!
//! The weights arrive with each lane's four-element groups in place, so a block is four
//! loads and a mask/shift per vector. The integer dot runs with the weights as the unsigned
//! operand (nibbles 0..15) and the activations broadcast as the signed one, then subtracts
//! 8 * sum(x); every product and sum is exact, so this equals the reference's integers.
//! AVX-512 takes two groups (16 rows) per 512-bit vector, halving the per-token work
//! (activation sum, scale product) per row.

use std::arch::x86_64::*;

use super::f16_at;
use super::repack_q4_0::{dot_acc_avx2, dot_acc_vnni, hsum_broadcast};
use crate::q4_0x8::{GROUP_BYTES, ROWS};
use crate::q8_0::BYTES as X_BYTES;

/// Most activation rows per call.
pub(crate) const TOKS: usize = 8;

/// The weights of block column `b` of a group: its 8 f16 scales widened, and the eight
/// vectors whose lane r holds elements 4k..4k+4 of row r (nibbles, 0..15).
///
/// # Safety
/// `b` must be readable for [`GROUP_BYTES`]; the CPU must have AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack8(b: *const u8) -> (__m256, [__m256i; 8]) {
    let mask = _mm256_set1_epi8(0x0f);
    let mut v = [_mm256_setzero_si256(); 8];
    // SAFETY: per the contract, all reads are inside the block column.
    unsafe {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
        for m in 0..4 {
            let c = _mm256_loadu_si256(b.add(16 + 32 * m) as *const __m256i);
            v[2 * m] = _mm256_and_si256(c, mask);
            v[2 * m + 1] = _mm256_and_si256(_mm256_srli_epi16(c, 4), mask);
        }
        (dw, v)
    }
}

macro_rules! step8 {
    ($name:ident, $features:literal, $dot:ident) => {
        /// One activation block `bx` against an unpacked block column: `acc` plus
        /// `isum * (d_w * d_x)` by one fused multiply-add per lane.
        ///
        /// # Safety
        /// `bx` must be readable for one Q8_0 block; the CPU must have the features.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name(acc: __m256, dw: __m256, v: &[__m256i; 8], bx: *const u8) -> __m256 {
            let zero = _mm256_setzero_si256();
            // SAFETY: all reads are inside the activation block.
            unsafe {
                let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
                let off = hsum_broadcast($dot(zero, _mm256_set1_epi8(8), qy));
                let mut isum = zero;
                for (k, &vk) in v.iter().enumerate() {
                    let xk = (bx.add(2 + 4 * k) as *const i32).read_unaligned();
                    isum = $dot(isum, vk, _mm256_set1_epi32(xk));
                }
                let isum = _mm256_sub_epi32(isum, off);
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at(bx)));
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc)
            }
        }
    };
}

step8!(step8_avx2, "avx2,fma,f16c", dot_acc_avx2);
step8!(
    step8_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_acc_vnni
);

/// One 8-row group against a fixed number of tokens, each accumulator its own variable so
/// it stays in a register (an array indexed in a loop was kept on the stack: 25% of the
/// kernel's time in store-forwarding).
macro_rules! group8 {
    ($name:ident, $features:literal, $step:ident, $($acc:ident $t:literal),+) => {
        /// # Safety
        /// The CPU must have the features; `g` must hold `nb` block columns of one group,
        /// `x` one pointer per accumulator to `nb` Q8_0 blocks, `out` room for 8 floats per
        /// accumulator (token t at `out[8 t..]`).
        #[target_feature(enable = $features)]
        unsafe fn $name(nb: usize, g: *const u8, x: &[*const u8], out: *mut f32) {
            $(let mut $acc = _mm256_setzero_ps();)+
            for i in 0..nb {
                // SAFETY: block column i and block i of each row are in bounds (caller).
                unsafe {
                    let (dw, v) = unpack8(g.add(i * GROUP_BYTES));
                    $($acc = $step($acc, dw, &v, x[$t].add(i * X_BYTES));)+
                }
            }
            // SAFETY: `out` has room for every token (caller).
            unsafe {
                $(_mm256_storeu_ps(out.add($t * ROWS), $acc);)+
            }
        }
    };
}

group8!(g8_avx2_1, "avx2,fma,f16c", step8_avx2, a0 0);
group8!(g8_avx2_2, "avx2,fma,f16c", step8_avx2, a0 0, a1 1);
group8!(g8_avx2_4, "avx2,fma,f16c", step8_avx2, a0 0, a1 1, a2 2, a3 3);
group8!(g8_vnni_1, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", step8_vnni, a0 0);
group8!(g8_vnni_2, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", step8_vnni, a0 0, a1 1);
group8!(
    g8_vnni_4,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    step8_vnni,
    a0 0, a1 1, a2 2, a3 3
);
group8!(
    g8_vnni_8,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    step8_vnni,
    a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7
);

/// [`unpack8`] for two consecutive groups in the two halves of 512-bit vectors.
///
/// # Safety
/// `b0` and `b1` must each be readable for [`GROUP_BYTES`]; the CPU must have AVX-512.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn unpack16(b0: *const u8, b1: *const u8) -> (__m512, [__m512i; 8]) {
    let mask = _mm512_set1_epi8(0x0f);
    let mut v = [_mm512_setzero_si512(); 8];
    // SAFETY: per the contract, all reads are inside the two block columns.
    unsafe {
        let dw = _mm512_cvtph_ps(_mm256_set_m128i(
            _mm_loadu_si128(b1 as *const __m128i),
            _mm_loadu_si128(b0 as *const __m128i),
        ));
        for m in 0..4 {
            let lo = _mm256_loadu_si256(b0.add(16 + 32 * m) as *const __m256i);
            let hi = _mm256_loadu_si256(b1.add(16 + 32 * m) as *const __m256i);
            let c = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            v[2 * m] = _mm512_and_si512(c, mask);
            v[2 * m + 1] = _mm512_and_si512(_mm512_srli_epi16(c, 4), mask);
        }
        (dw, v)
    }
}

/// [`step8_vnni`] over 16 rows.
///
/// # Safety
/// `bx` must be readable for one Q8_0 block; the CPU must have AVX-512 VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn step16(acc: __m512, dw: __m512, v: &[__m512i; 8], bx: *const u8) -> __m512 {
    // SAFETY: all reads are inside the activation block.
    unsafe {
        let qy = _mm256_loadu_si256(bx.add(2) as *const __m256i);
        let off = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), qy);
        let off = _mm512_broadcastd_epi32(_mm256_castsi256_si128(hsum_broadcast(off)));
        let mut isum = _mm512_setzero_si512();
        for (k, &vk) in v.iter().enumerate() {
            let xk = (bx.add(2 + 4 * k) as *const i32).read_unaligned();
            isum = _mm512_dpbusd_epi32(isum, vk, _mm512_set1_epi32(xk));
        }
        let isum = _mm512_sub_epi32(isum, off);
        let d = _mm512_mul_ps(dw, _mm512_set1_ps(f16_at(bx)));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc)
    }
}

/// Two consecutive groups (16 rows, the second `nb` block columns after the first) against a
/// fixed number of tokens; results at `out[16 t..]`.
macro_rules! group16 {
    ($name:ident, $($acc:ident $t:literal),+) => {
        /// # Safety
        /// As for the 8-row kernels, for both groups; `out` has 16 floats per token.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(nb: usize, g: *const u8, x: &[*const u8], out: *mut f32) {
            $(let mut $acc = _mm512_setzero_ps();)+
            // SAFETY: the caller guarantees two groups of `nb` columns.
            let g1 = unsafe { g.add(nb * GROUP_BYTES) };
            for i in 0..nb {
                // SAFETY: block column i of both groups and block i of each row are in
                // bounds (caller).
                unsafe {
                    let (dw, v) = unpack16(g.add(i * GROUP_BYTES), g1.add(i * GROUP_BYTES));
                    $($acc = step16($acc, dw, &v, x[$t].add(i * X_BYTES));)+
                }
            }
            // SAFETY: `out` has room for every token (caller).
            unsafe {
                $(_mm512_storeu_ps(out.add($t * 2 * ROWS), $acc);)+
            }
        }
    };
}

group16!(g16_1, a0 0);
group16!(g16_2, a0 0, a1 1);
group16!(g16_4, a0 0, a1 1, a2 2, a3 3);
group16!(g16_8, a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7);

type Kernel = unsafe fn(usize, *const u8, &[*const u8], *mut f32);

/// Runs the smallest kernel of `kernels` (1, 2, 4[, 8] tokens) that covers `x`, padding with
/// the last row (its extra results land in `scratch` and are dropped), then copies the
/// results for `x.len()` tokens of `rows` rows each to `out`.
///
/// # Safety
/// The kernels' CPU features must be present.
unsafe fn run(
    kernels: &[Kernel],
    n: usize,
    groups: &[u8],
    n_groups: usize,
    x: &[&[u8]],
    out: &mut [f32],
) {
    let nb = checked_blocks(n, groups, n_groups, x, out, 1 << (kernels.len() - 1));
    let m = x.len();
    let idx = m.next_power_of_two().trailing_zeros() as usize;
    let toks = 1 << idx;
    let ptrs: [*const u8; TOKS] = std::array::from_fn(|i| x[i.min(m - 1)].as_ptr());
    let rows = n_groups * ROWS;
    let mut scratch = [0f32; 2 * ROWS * TOKS];
    // SAFETY: `checked_blocks` checked the group and row lengths; `scratch` holds
    // `toks * rows` floats; the features are the caller's promise.
    unsafe { kernels[idx](nb, groups.as_ptr(), &ptrs[..toks], scratch.as_mut_ptr()) };
    out[..m * rows].copy_from_slice(&scratch[..m * rows]);
}

/// Checks the lengths a group kernel relies on; returns the block count.
fn checked_blocks(
    n: usize,
    groups: &[u8],
    n_groups: usize,
    x: &[&[u8]],
    out: &[f32],
    max_toks: usize,
) -> usize {
    let nb = n / crate::q4_0::BLOCK;
    assert!(
        (1..=max_toks).contains(&x.len())
            && groups.len() >= n_groups * nb * GROUP_BYTES
            && x.iter().all(|r| r.len() >= nb * X_BYTES)
            && out.len() >= n_groups * ROWS * x.len(),
        "interleaved Q4_0: buffers too short for {n} elements, {} tokens",
        x.len()
    );
    nb
}

/// Most activation rows per call at the AVX2 level (16 registers: 8 weight vectors beside
/// the accumulators).
pub(crate) const TOKS_AVX2: usize = 4;

/// One interleaved group (`group`: its bytes) times 1..=4 Q8_0 rows, into `out[t * 8 + r]`.
pub(crate) fn group8_avx2_entry(n: usize, group: &[u8], x: &[&[u8]], out: &mut [f32]) {
    // SAFETY: reachable only through dispatch after detecting AVX2/FMA/F16C.
    unsafe { run(&[g8_avx2_1, g8_avx2_2, g8_avx2_4], n, group, 1, x, out) }
}

/// One interleaved group times 1..=8 Q8_0 rows with AVX-512 VNNI, into `out[t * 8 + r]`.
pub(crate) fn group8_vnni_entry(n: usize, group: &[u8], x: &[&[u8]], out: &mut [f32]) {
    // SAFETY: reachable only through dispatch after detecting AVX-512 VNNI.
    unsafe {
        run(
            &[g8_vnni_1, g8_vnni_2, g8_vnni_4, g8_vnni_8],
            n,
            group,
            1,
            x,
            out,
        )
    }
}

/// Two consecutive interleaved groups (`groups`: their bytes, 16 rows) times 1..=8 Q8_0
/// rows, into `out[t * 16 + r]`.
pub(crate) fn group16_vnni_entry(n: usize, groups: &[u8], x: &[&[u8]], out: &mut [f32]) {
    // SAFETY: reachable only through dispatch after detecting AVX-512 VNNI.
    unsafe { run(&[g16_1, g16_2, g16_4, g16_8], n, groups, 2, x, out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{detected_level, SimdLevel};
    use crate::q4_0::{BLOCK, BYTES};
    use crate::testkit::simd::Rng;

    fn blocks(rng: &mut Rng, n_blocks: usize, bytes: usize, scale: fn(&mut Rng) -> u16) -> Vec<u8> {
        let mut r: Vec<u8> = (0..n_blocks * bytes).map(|_| rng.next() as u8).collect();
        for b in r.chunks_exact_mut(bytes) {
            b[..2].copy_from_slice(&scale(rng).to_le_bytes());
        }
        r
    }

    /// Every kernel and token count equals the scalar reference over the same interleaved
    /// bytes (itself tested equal to the plain-layout repacked order), bit for bit, with
    /// extreme quants and f16 scales at the ends of the range.
    #[test]
    fn kernels_equal_the_reference_bit_for_bit() {
        let mut rng = Rng::new(48);
        let scales: [fn(&mut Rng) -> u16; 4] = [
            |r| half::f16::from_f32(r.normal() * 0.01).to_bits(),
            |r| 0x7bff | ((r.next() as u16 & 1) << 15),
            |r| 1 + (r.below(0x3ff) as u16),
            |r| [0u16, 0x8000, 0x3c00, 0x7bff][r.below(4) as usize],
        ];
        for (k, scale) in scales.iter().enumerate() {
            for nb in [1usize, 3, 18] {
                let n = nb * BLOCK;
                let mut w = blocks(&mut rng, 2 * ROWS * nb, BYTES, *scale);
                let mut xs = blocks(&mut rng, TOKS * nb, X_BYTES, *scale);
                if k == 3 {
                    for (i, b) in w.chunks_exact_mut(BYTES).enumerate() {
                        b[2..].fill(if i % 2 == 0 { 0xff } else { 0 });
                    }
                    for (i, b) in xs.chunks_exact_mut(X_BYTES).enumerate() {
                        b[2..].fill(if i % 2 == 0 { 0x80 } else { 0x7f });
                    }
                }
                assert!(crate::q4_0x8::interleave(&mut w, 2 * ROWS, n));
                let xr: Vec<&[u8]> = xs.chunks_exact(nb * X_BYTES).collect();
                let half = nb * GROUP_BYTES;
                for toks in 1..=TOKS {
                    let mut want = vec![0f32; 2 * ROWS * toks];
                    let (a, b) = want.split_at_mut(ROWS * toks);
                    crate::q4_0x8::dot_group(n, &w[..half], &xr[..toks], a);
                    crate::q4_0x8::dot_group(n, &w[half..], &xr[..toks], b);
                    let mut got8 = vec![0f32; ROWS * toks];
                    let mut kernels: Vec<crate::order::GroupFn> = Vec::new();
                    if detected_level() >= SimdLevel::Avx2 && toks <= TOKS_AVX2 {
                        kernels.push(group8_avx2_entry);
                    }
                    if detected_level() >= SimdLevel::Avx512 {
                        kernels.push(group8_vnni_entry);
                    }
                    for f in kernels {
                        f(n, &w[..half], &xr[..toks], &mut got8);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got8),
                            bits(&want[..ROWS * toks]),
                            "#{k} nb{nb} t{toks}"
                        );
                    }
                    if detected_level() >= SimdLevel::Avx512 {
                        let mut got = vec![0f32; 2 * ROWS * toks];
                        group16_vnni_entry(n, &w, &xr[..toks], &mut got);
                        for t in 0..toks {
                            for r in 0..2 * ROWS {
                                let (g, rr) = (r / ROWS, r % ROWS);
                                let e = want[g * ROWS * toks + t * ROWS + rr];
                                assert_eq!(got[t * 2 * ROWS + r].to_bits(), e.to_bits());
                            }
                        }
                    }
                }
            }
        }
    }
}

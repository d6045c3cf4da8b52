//! x86-64 SIMD `vec_dot` kernels. Each one reproduces the float accumulation order of the
//! kernel ggml compiles for the same instruction set (ggml-cpu/arch/x86/quants.c and vec.cpp),
//! so that on a given machine our dot products equal llama.cpp's bit for bit: the models'
//! logits are sensitive enough to last-bit differences that a merely "accurate" kernel drifts.
//!
//! Two levels, each a set of target features checked once at run time by `crate::dispatch`:
//! * `avx2`: AVX2 + FMA + F16C, ggml's `__AVX2__` code paths (integer products via
//!   `maddubs`/`madd`);
//! * `avx512`: additionally AVX-512 F/BW/VL/VNNI, what ggml uses on a Zen 4 or recent Xeon:
//!   the same 256-bit block loops with `vpdpbusd` for the integer products, and 512-bit
//!   accumulators for the float formats.
//!
//! Kernels are `unsafe fn`s with `#[target_feature]`; the safe wrappers handed out by the
//! dispatch table check buffer lengths and are only ever reachable once detection has
//! confirmed the features (see `crate::dispatch::kernel`).
//!
//! K-quant kernels live in `q{2,3,4,5,6}_k.rs` beside these and register themselves in
//! [`avx2_kernel`] / [`avx512_kernel`].

use std::arch::x86_64::*;

#[allow(unused_imports)]
use crate::dispatch::{Tile, VecDotFn, VecDotW4Fn, VecDotX4Fn};
pub(crate) use crate::kernel_set::{
    blocks, blocks_tile, blocks_w4, blocks_x4, scatter, LevelKernels,
};
use crate::GgmlType;

/// The six safe entry points of a 32-element block format (one row, four activation rows,
/// four weight rows; AVX2 and AVX-512), written once: they differ between formats only in
/// the block geometry and the `dot_avx2` / `dot_avx512` kernels of the calling module, which
/// are taken from the call site (`BLOCK`, `BYTES`, the activation block size given here).
macro_rules! block_entry_points {
    ($x_bytes:expr) => {
        pub(crate) fn vec_dot_avx2(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = blocks(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C
            // detection; `blocks` checked the lengths.
            unsafe { dot_avx2(nb, [w.as_ptr()], [x.as_ptr()])[0][0] }
        }

        pub(crate) fn vec_dot_x4_avx2(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = blocks_x4(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { dot_avx2(nb, [w.as_ptr()], x.map(|r| r.as_ptr()))[0] }
        }

        pub(crate) fn vec_dot_w4_avx2(n: usize, w: [&[u8]; 4], x: &[u8]) -> [f32; 4] {
            let nb = blocks_w4(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_w4` checked all five lengths.
            unsafe { dot_avx2(nb, w.map(|r| r.as_ptr()), [x.as_ptr()]).map(|r| r[0]) }
        }

        pub(crate) fn vec_dot_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = blocks(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: only reachable through the dispatch table after AVX-512 VNNI
            // detection; `blocks` checked the lengths.
            unsafe { dot_avx512(nb, [w.as_ptr()], [x.as_ptr()])[0][0] }
        }

        pub(crate) fn vec_dot_x4_avx512(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = blocks_x4(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { dot_avx512(nb, [w.as_ptr()], x.map(|r| r.as_ptr()))[0] }
        }

        pub(crate) fn vec_dot_w4_avx512(n: usize, w: [&[u8]; 4], x: &[u8]) -> [f32; 4] {
            let nb = blocks_w4(n, BLOCK, w, BYTES, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_w4` checked all five lengths.
            unsafe { dot_avx512(nb, w.map(|r| r.as_ptr()), [x.as_ptr()]).map(|r| r[0]) }
        }

        /// Four weight rows times one to four activation rows (see
        /// [`crate::dispatch::TileFn`]): the weights are unpacked once per block for all
        /// the activation rows, with 16 independent accumulators in flight. (Q5_0 and Q8_0 use
        /// the `tile_pairs` kernels instead, as Q4_1 and Q5_1 do from 4 tokens on.)
        #[allow(dead_code)]
        pub(crate) fn tile_avx512(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, BLOCK, w, BYTES, x, $x_bytes, out, 4, 4);
            let wp: [*const u8; 4] = std::array::from_fn(|i| w[i].as_ptr());
            // SAFETY: only reachable through the dispatch table after AVX-512 VNNI
            // detection; `blocks_tile` checked every length and the tile shape.
            unsafe {
                match x.len() {
                    1 => super::scatter(dot_avx512(nb, wp, [x[0].as_ptr()]), out),
                    2 => super::scatter(dot_avx512(nb, wp, [x[0].as_ptr(), x[1].as_ptr()]), out),
                    3 => super::scatter(
                        dot_avx512(nb, wp, [x[0].as_ptr(), x[1].as_ptr(), x[2].as_ptr()]),
                        out,
                    ),
                    _ => super::scatter(
                        dot_avx512(nb, wp, std::array::from_fn::<_, 4, _>(|i| x[i].as_ptr())),
                        out,
                    ),
                }
            }
        }

        /// Four weight rows times one activation row at the `avx2` level (16 vector
        /// registers leave no room for a wider tile).
        pub(crate) fn tile_avx2(n: usize, w: &[&[u8]], x: &[&[u8]], out: &mut [f32]) {
            let nb = super::blocks_tile(n, BLOCK, w, BYTES, x, $x_bytes, out, 4, 1);
            let wp: [*const u8; 4] = std::array::from_fn(|i| w[i].as_ptr());
            // SAFETY: only reachable through the dispatch table after AVX2/FMA/F16C
            // detection; `blocks_tile` checked every length and the tile shape.
            unsafe { super::scatter(dot_avx2(nb, wp, [x[0].as_ptr()]), out) }
        }
    };
}

pub(crate) mod activation;
pub(crate) mod bf16;
pub(crate) mod f16;
pub(crate) mod f32;
pub(crate) mod gemv_f16;
pub(crate) mod gemv_q8_0;
pub(crate) mod iq4_nl;
pub(crate) mod iq4_xs;
pub(crate) mod iq_grid;
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_0;
pub(crate) mod q4_0x8;
pub(crate) mod q4_1;
pub(crate) mod q4_1_lanes;
pub(crate) mod q4_k;
pub(crate) mod q4_kx16;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q6_k_tile;
pub(crate) mod q8_0;
pub(crate) mod q8_0_lanes;
pub(crate) mod q8_k;
pub(crate) mod repack_iq4_nl;
pub(crate) mod repack_q4_0;
pub(crate) mod tile_pairs;
pub(crate) mod tinyblas_f16;
pub(crate) mod tinyblas_f16_avx2;
pub(crate) mod tq1_0;
pub(crate) mod tq2_0;

/// Asks, a share at a time, for the weight rows after a one-token tile's own: the tile's
/// rows are adjacent in memory, so the next group's `bytes` start where its rows end, at
/// `next`. Called once per step of `steps`, it requests the next group's lines evenly over
/// the tile's run rather than in one burst at its start (a burst fills the queues the
/// tile's own loads need; a short look-ahead inside each row misses the next group
/// entirely when rows are short, as on a 135M model). The prefetches go to L2 (`T1`), as
/// the matmul's group prefetch does for the other tiles.
pub(crate) struct NextGroup {
    next: *const u8,
    lines: usize,
    steps: usize,
    /// Lines requested so far, and the running remainder of `lines * step / steps`.
    done: usize,
    due: usize,
}

impl NextGroup {
    pub(crate) fn new(next: *const u8, bytes: usize, steps: usize) -> NextGroup {
        NextGroup {
            next,
            lines: bytes.div_ceil(64),
            steps: steps.max(1),
            done: 0,
            due: 0,
        }
    }

    /// The lines (indices from `next`) due at this step: over `steps` calls, every line of
    /// the group exactly once, in order, spread evenly.
    #[inline(always)]
    fn due(&mut self) -> std::ops::Range<usize> {
        let from = self.done;
        self.due += self.lines;
        let n = self.due / self.steps;
        self.due -= n * self.steps;
        self.done += n;
        from..self.done
    }

    /// Requests the lines due at this step, into L2.
    #[inline(always)]
    pub(crate) fn step(&mut self) {
        for line in self.due() {
            // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot
            // fault, whatever the address (computed with wrapping arithmetic, never read).
            unsafe { _mm_prefetch::<_MM_HINT_T1>(self.next.wrapping_add(64 * line) as *const i8) };
        }
    }
}

#[cfg(test)]
mod next_group_tests {
    use super::NextGroup;

    /// Every line of the next group is requested once, in order, at most a step's share
    /// (rounded up) at a time, for groups longer and shorter than the step count.
    #[test]
    fn requests_every_line_once_spread_over_the_steps() {
        for (bytes, steps) in [
            (17408usize, 8usize),
            (4896, 18),
            (100, 7),
            (64, 1),
            (0, 5),
            (16384, 32),
        ] {
            let lines = bytes.div_ceil(64);
            let mut g = NextGroup::new(std::ptr::null(), bytes, steps);
            let mut next = 0;
            for _ in 0..steps {
                let r = g.due();
                assert_eq!(r.start, next, "{bytes} bytes over {steps} steps");
                assert!(
                    r.len() <= lines.div_ceil(steps),
                    "{bytes} over {steps}: {r:?}"
                );
                next = r.end;
            }
            assert_eq!(next, lines, "{bytes} bytes over {steps} steps");
            // The prefetching steps themselves, over a real buffer and past its end.
            let buf = vec![0u8; bytes];
            let mut g = NextGroup::new(buf.as_ptr(), 2 * bytes, steps);
            for _ in 0..steps {
                g.step();
            }
            assert_eq!(g.done, (2 * bytes).div_ceil(64));
        }
    }
}

pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(crate) fn has_avx512() -> bool {
    // Asked once per tile call by the kernels that check it: one cached load rather than
    // seven feature lookups.
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// ggml compiles its BF16 dot with `vdpbf16ps` when the CPU has it (Zen 4 does); that
/// instruction rounds differently from a multiply and an add, so it is a separate kernel.
pub(crate) fn has_avx512bf16() -> bool {
    has_avx512() && is_x86_feature_detected!("avx512bf16")
}

/// A format's kernels at each x86 level; each format's file defines `kernels()`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SimdKernels {
    pub ty: GgmlType,
    pub avx2: LevelKernels,
    pub avx512: LevelKernels,
}

/// Every format's SIMD kernels, in one table (one line per format).
fn table() -> &'static [SimdKernels] {
    static TABLE: std::sync::OnceLock<Vec<SimdKernels>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        vec![
            f32::kernels(),
            f16::kernels(),
            bf16::kernels(),
            q4_0::kernels(),
            q4_1::kernels(),
            q5_0::kernels(),
            q5_1::kernels(),
            q8_0::kernels(),
            q2_k::kernels(),
            q3_k::kernels(),
            q4_k::kernels(),
            q5_k::kernels(),
            q6_k::kernels(),
            iq4_nl::kernels(),
            iq4_xs::kernels(),
            iq_grid::kernels::<crate::iq2_xxs::Iq2Xxs>(GgmlType::IQ2_XXS),
            iq_grid::iq1_kernels::<crate::iq1_s::Iq1S>(GgmlType::IQ1_S),
            iq_grid::iq1_kernels::<crate::iq1_m::Iq1M>(GgmlType::IQ1_M),
            iq_grid::kernels::<crate::iq2_xs::Iq2Xs>(GgmlType::IQ2_XS),
            iq_grid::kernels::<crate::iq2_s::Iq2S>(GgmlType::IQ2_S),
            iq_grid::kernels::<crate::iq3_xxs::Iq3Xxs>(GgmlType::IQ3_XXS),
            iq_grid::kernels::<crate::iq3_s::Iq3S>(GgmlType::IQ3_S),
            tq1_0::kernels(),
            tq2_0::kernels(),
        ]
    })
}

/// The kernels of `ty` written for `level` (`Avx2` or `Avx512`; nothing for `Scalar`). Only
/// call them once detection has confirmed the level.
pub(crate) fn kernels_at(ty: GgmlType, level: crate::dispatch::SimdLevel) -> LevelKernels {
    use crate::dispatch::SimdLevel;
    let Some(k) = table().iter().find(|k| k.ty == ty) else {
        return LevelKernels::NONE;
    };
    match level {
        SimdLevel::Avx2 => k.avx2,
        SimdLevel::Avx512 => k.avx512,
        _ => LevelKernels::NONE,
    }
}

/// Sum of 8 floats in ggml's `hsum_float_8` order: halves, then pairs two apart, then the
/// last two.
#[inline]
#[target_feature(enable = "avx")]
pub(crate) fn hsum_float_8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// GCC's `_mm512_reduce_add_ps` tree (which ggml's reductions inherit): 256-bit halves, then
/// 128-bit halves, then lanes two apart, then the last two. Rust's intrinsic of the same
/// name need not use this order, so it is spelled out.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn reduce_add_512(x: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(x);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
    let t3 = _mm256_add_ps(hi, lo);
    let t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    let t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
    _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)))
}

/// The two f16 values at `p` (e.g. a block's `d` and `m`) widened, in lanes 0 and 1.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f16_pair(p: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 4 readable bytes; unaligned read.
    let bits = unsafe { (p as *const i32).read_unaligned() };
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits))
}

/// One f16 at `p` widened.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes; unaligned read.
    let bits = unsafe { (p as *const u16).read_unaligned() };
    // Moved with a plain `vmovd` written out in asm: left to itself LLVM turns the move into a
    // 16-bit insert (`vpinsrw`) that merges into an arbitrary register, and when it picks a
    // loop's accumulator the whole loop is serialised on it (3x slower).
    let v: __m128i;
    // SAFETY: register-only move from a general-purpose to a vector register; AVX is enabled.
    unsafe {
        std::arch::asm!(
            "vmovd {v}, {b:e}",
            v = out(xmm_reg) v,
            b = in(reg) bits as u32,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    _mm_cvtss_f32(_mm_cvtph_ps(v))
}

/// 16 bytes of packed nibbles at `p` as 32 bytes in [0, 15]: low nibbles first, then high
/// ones, matching the Q4/Q5 block layout.
///
/// # Safety
/// `p` must be readable for 16 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
    let tmp = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// The 32 bits at `p` spread to 32 bytes, 0xff where the bit is set, else 0.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn bytes_from_bits_32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes; unaligned read.
    let bits = unsafe { (p as *const i32).read_unaligned() };
    // Byte k gets source byte k / 8, then every bit but k % 8 is forced on, so the byte is
    // all ones exactly when that bit was set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits),
        _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        ),
    );
    let others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1))
}

/// Unsigned-by-signed byte products summed in groups of four, as floats (lane k covers
/// bytes 4k..4k+4). `maddubs` saturates its 16-bit pair sums, exactly as ggml's AVX2 build.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn mul_sum_us8_avx2(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// [`mul_sum_us8_avx2`] with VNNI: one `vpdpbusd`, which does not saturate (ggml's build
/// for AVX-512 VNNI machines).
#[inline]
#[target_feature(enable = "avx2,avx512vl,avx512vnni")]
pub(crate) fn mul_sum_us8_vnni(ax: __m256i, sy: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
}

/// Signed-by-signed products through ggml's sign trick (|x| times y with x's sign), so that
/// edge cases such as -128 behave like ggml's: -(-128) stays -128.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn mul_sum_i8_avx2(x: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8_avx2(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// [`mul_sum_i8_avx2`] with VNNI.
#[inline]
#[target_feature(enable = "avx2,avx512vl,avx512vnni")]
pub(crate) fn mul_sum_i8_vnni(x: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8_vnni(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

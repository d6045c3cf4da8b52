//! aarch64 NEON `vec_dot` kernels. Each one reproduces the float accumulation order of the
//! kernel ggml compiles for the same instruction set (ggml-cpu/arch/arm/quants.c and vec.cpp),
//! so that an ARM build of torchless agrees with llama.cpp on ARM, as `x86/` does on x86.
//!
//! Two levels, checked once at run time by `crate::dispatch`:
//! * `neon`: Advanced SIMD only (every aarch64 CPU). ggml then emulates `vdotq_s32` with
//!   widening multiplies and pairwise adds, which spreads the byte products over the four
//!   32-bit lanes differently from `sdot` (lane k gets bytes 2k, 2k+1, 2k+8, 2k+9); the lanes
//!   are converted to float and accumulated separately, so the two levels differ in the last
//!   bits exactly as ggml's two builds do.
//! * `dotprod`: NEON plus `sdot` (lane k gets bytes 4k..4k+3). `vdotq_s32` is not stable in
//!   Rust, so `sdot` is written in `asm!` inside `#[target_feature(enable = "neon,dotprod")]`
//!   functions, which are only reachable after `is_aarch64_feature_detected!("dotprod")`.
//!
//! NEON is part of the aarch64 baseline; the `neon` kernels still carry the target feature so
//! that every kernel states what it needs. Kernels are `unsafe fn`s; the safe wrappers handed
//! out by the dispatch table check buffer lengths (`crate::kernel_set`).

use std::arch::aarch64::*;

use crate::dispatch::SimdLevel;
pub(crate) use crate::kernel_set::{blocks, blocks_w4, blocks_x4, LevelKernels};
use crate::GgmlType;

/// The safe entry points of a block format at both levels (one row, four activation rows,
/// four weight rows), from the calling module's `dot_neon` / `dot_dotprod` kernels, which
/// take `RW` weight rows and `R` activation rows and give every pair its own accumulators.
macro_rules! neon_entry_points {
    ($block:expr, $w_bytes:expr, $x_bytes:expr) => {
        pub(crate) fn vec_dot_neon(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = super::blocks(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: NEON is baseline on aarch64; `blocks` checked the lengths.
            unsafe { dot_neon(nb, [w.as_ptr()], [x.as_ptr()])[0][0] }
        }

        pub(crate) fn vec_dot_x4_neon(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = super::blocks_x4(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { dot_neon(nb, [w.as_ptr()], x.map(|r| r.as_ptr()))[0] }
        }

        pub(crate) fn vec_dot_w4_neon(n: usize, w: [&[u8]; 4], x: &[u8]) -> [f32; 4] {
            let nb = super::blocks_w4(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_w4` checked all five lengths.
            unsafe { dot_neon(nb, w.map(|r| r.as_ptr()), [x.as_ptr()]).map(|r| r[0]) }
        }

        pub(crate) fn vec_dot_dotprod(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = super::blocks(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: only reachable through the dispatch table after dotprod detection;
            // `blocks` checked the lengths.
            unsafe { dot_dotprod(nb, [w.as_ptr()], [x.as_ptr()])[0][0] }
        }

        pub(crate) fn vec_dot_x4_dotprod(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = super::blocks_x4(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { dot_dotprod(nb, [w.as_ptr()], x.map(|r| r.as_ptr()))[0] }
        }

        pub(crate) fn vec_dot_w4_dotprod(n: usize, w: [&[u8]; 4], x: &[u8]) -> [f32; 4] {
            let nb = super::blocks_w4(n, $block, w, $w_bytes, x, $x_bytes);
            // SAFETY: as for the single-row kernel; `blocks_w4` checked all five lengths.
            unsafe { dot_dotprod(nb, w.map(|r| r.as_ptr()), [x.as_ptr()]).map(|r| r[0]) }
        }

        /// This format's kernels at both levels (see [`super::SimdKernels`]).
        pub(crate) fn kernels() -> super::SimdKernels {
            use super::LevelKernels;
            super::SimdKernels {
                ty: TY,
                neon: LevelKernels {
                    one: Some(vec_dot_neon),
                    x4: Some(vec_dot_x4_neon),
                    w4: Some(vec_dot_w4_neon),
                    tile: None,
                    gemv_tile: None,
                },
                dotprod: LevelKernels {
                    one: Some(vec_dot_dotprod),
                    x4: Some(vec_dot_x4_dotprod),
                    w4: Some(vec_dot_w4_dotprod),
                    tile: None,
                    gemv_tile: None,
                },
            }
        }
    };
}

/// The block loop of ggml's ARM kernels for 32-element blocks against Q8_0 / Q8_1 (Q4_0,
/// Q4_1, Q5_0, Q5_1, Q8_0): blocks two at a time, each block's 32 byte products summed into
/// four 32-bit lanes (`$dot`: `sdot` or its stand-in), converted to float and multiplied by
/// `d_w * d_x`, then added (not fused) into one of two accumulators by block parity; at the
/// end the two accumulators reduced across lanes (pairwise: `(a0 + a1) + (a2 + a3)`) and
/// added, then the calling module's `finish` (offset terms) and, for an odd block count, its
/// scalar `tail` for the last block. The calling module supplies `W_BYTES`, `X_BYTES`,
/// `X_QS` (offset of the activation quants), `unpack` (a weight block's 32 values as two
/// vectors of signed bytes), `min_pair` (offset terms of a pair of blocks), `finish` and
/// `tail`.
macro_rules! block32_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the `RW` weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` blocks. Every pair of rows gets its own
        /// accumulators, so each result is the same whatever `RW` and `R`.
        #[target_feature(enable = $features)]
        unsafe fn $name<const RW: usize, const R: usize>(
            nb: usize,
            w: [*const u8; RW],
            x: [*const u8; R],
        ) -> [[f32; R]; RW] {
            let zero = vdupq_n_f32(0.0);
            let mut acc = [[[zero; 2]; R]; RW];
            let mut mins = [[[0f32; 2]; R]; RW];
            for p in 0..nb / 2 {
                // SAFETY: blocks 2p and 2p + 1 of each row are in bounds (caller), and the
                // offsets stay inside a block.
                unsafe {
                    for ((acc, mins), wr) in acc.iter_mut().zip(mins.iter_mut()).zip(w) {
                        let bw0 = wr.add(2 * p * W_BYTES);
                        let bw1 = bw0.add(W_BYTES);
                        let (l0, h0) = unpack(bw0);
                        let (l1, h1) = unpack(bw1);
                        let (dw0, dw1) = (super::f16_at(bw0), super::f16_at(bw1));
                        for ((acc, mins), xr) in acc.iter_mut().zip(mins.iter_mut()).zip(x) {
                            let bx0 = xr.add(2 * p * X_BYTES);
                            let bx1 = bx0.add(X_BYTES);
                            min_pair(bw0, bx0, bw1, bx1, mins);
                            let z = vdupq_n_s32(0);
                            let p0 = $dot(
                                $dot(z, l0, vld1q_s8(bx0.add(X_QS) as *const i8)),
                                h0,
                                vld1q_s8(bx0.add(X_QS + 16) as *const i8),
                            );
                            let p1 = $dot(
                                $dot(z, l1, vld1q_s8(bx1.add(X_QS) as *const i8)),
                                h1,
                                vld1q_s8(bx1.add(X_QS + 16) as *const i8),
                            );
                            let d0 = dw0 * super::f16_at(bx0);
                            let d1 = dw1 * super::f16_at(bx1);
                            acc[0] = super::mla_n(acc[0], vcvtq_f32_s32(p0), d0);
                            acc[1] = super::mla_n(acc[1], vcvtq_f32_s32(p1), d1);
                        }
                    }
                }
            }
            let mut out = [[0f32; R]; RW];
            for (((o, acc), mins), wr) in out.iter_mut().zip(&acc).zip(&mins).zip(w) {
                for (((o, acc), mins), xr) in o.iter_mut().zip(acc).zip(mins).zip(x) {
                    let s = finish(vaddvq_f32(acc[0]) + vaddvq_f32(acc[1]), *mins);
                    *o = if nb % 2 == 1 {
                        // SAFETY: the last block of each row is in bounds (caller).
                        unsafe { tail(s, wr.add((nb - 1) * W_BYTES), xr.add((nb - 1) * X_BYTES)) }
                    } else {
                        s
                    };
                }
            }
            out
        }
    };
}

/// The per-output order of ggml's ARM repacked 4x4 gemv / gemm kernels (with `sdot`): one
/// lane per output, a chain over the blocks, `acc = fma(isum, d_w * d_x, acc)` when `$fused`,
/// else `acc + (d_w * d_x) * isum`, no horizontal sum. The calling module supplies `W_BYTES`,
/// `X_BYTES` and `$isum(w, x) -> i32`, a block's exact integer sum. Generates `$one` and
/// `$x4` (one weight row, four activation rows), safe entry points for the dispatch of the
/// `dotprod` level.
macro_rules! chain_kernel {
    ($kernel:ident, $one:ident, $x4:ident, $isum:ident, $fused:expr) => {
        /// # Safety
        /// The CPU must have the dot-product extension; each of the `R` activation rows in `x`
        /// and the weight row `w` must hold `nb` blocks.
        #[target_feature(enable = "neon,dotprod")]
        unsafe fn $kernel<const R: usize>(nb: usize, w: *const u8, x: [*const u8; R]) -> [f32; R] {
            let mut out = [0f32; R];
            for i in 0..nb {
                // SAFETY: block i of every row is in bounds (caller).
                unsafe {
                    let bw = w.add(i * W_BYTES);
                    let dw = super::f16_at(bw);
                    for (o, xr) in out.iter_mut().zip(x) {
                        let bx = xr.add(i * X_BYTES);
                        let s = $isum(bw, bx) as f32;
                        let d = dw * super::f16_at(bx);
                        *o = if $fused { s.mul_add(d, *o) } else { *o + d * s };
                    }
                }
            }
            out
        }

        pub(crate) fn $one(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = super::blocks(n, 32, w, W_BYTES, x, X_BYTES);
            // SAFETY: only reachable through `order` after dotprod detection; `blocks`
            // checked the lengths.
            unsafe { $kernel(nb, w.as_ptr(), [x.as_ptr()])[0] }
        }

        #[allow(dead_code)]
        pub(crate) fn $x4(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = super::blocks_x4(n, 32, w, W_BYTES, x, X_BYTES);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { $kernel(nb, w.as_ptr(), x.map(|r| r.as_ptr())) }
        }
    };
}

/// The super-block loop of the K-quant kernels (and the other formats dotted with Q8_K):
/// ggml's ARM kernels form each super-block's integer sums exactly and fold them into one
/// running float sum per super-block, so the calling module's `$sb(w, x, sum) -> sum` does a
/// whole super-block and this only walks them. The module supplies `W_BYTES` and `X_BYTES`.
macro_rules! superblock_kernel {
    ($name:ident, $features:literal, $sb:ident) => {
        /// # Safety
        /// The CPU must have the enabled features; each of the `RW` weight rows in `w` and `R`
        /// activation rows in `x` must hold `nb` super-blocks. Each pair of rows is its own
        /// chain, so each result is the same whatever `RW` and `R`.
        #[target_feature(enable = $features)]
        unsafe fn $name<const RW: usize, const R: usize>(
            nb: usize,
            w: [*const u8; RW],
            x: [*const u8; R],
        ) -> [[f32; R]; RW] {
            let mut out = [[0f32; R]; RW];
            for i in 0..nb {
                for (o, wr) in out.iter_mut().zip(w) {
                    for (o, xr) in o.iter_mut().zip(x) {
                        // SAFETY: super-block i of each row is in bounds (caller).
                        *o = unsafe { $sb(wr.add(i * W_BYTES), xr.add(i * X_BYTES), *o) };
                    }
                }
            }
            out
        }
    };
}

/// The tests of a K-quant's NEON file: both flavours (dotprod where the CPU has it) against
/// the scalar reference `$scalar` and each other, and the four-row kernels against the
/// single-row ones, on `testkit::kquant`'s format `$fmt`.
macro_rules! kquant_tests {
    ($fmt:ident, $scalar:path) => {
        #[cfg(test)]
        mod tests {
            use crate::testkit::kquant as ktest;

            #[test]
            fn both_flavours_agree_with_scalar_and_each_other() {
                let mut levels: Vec<(&str, ktest::Kernel)> = vec![("neon", super::vec_dot_neon)];
                if super::super::has_dotprod() {
                    levels.push(("dotprod", super::vec_dot_dotprod));
                }
                ktest::check_against_scalar(&ktest::$fmt, $scalar, &levels);
            }

            #[test]
            fn four_row_kernels_equal_single_row_kernels() {
                ktest::check_x4(&ktest::$fmt, super::vec_dot_neon, super::vec_dot_x4_neon);
                if super::super::has_dotprod() {
                    let (one, x4) = (super::vec_dot_dotprod, super::vec_dot_x4_dotprod);
                    ktest::check_x4(&ktest::$fmt, one, x4);
                }
            }
        }
    };
}

/// Safe single-row and four-activation-row entry points of a `superblock_kernel!` kernel for
/// the `dotprod` level, for `order` (ggml's repacked K-quant orders).
macro_rules! superblock_entry {
    ($kernel:ident, $one:ident, $x4:ident) => {
        pub(crate) fn $one(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = super::blocks(n, QK_K, w, W_BYTES, x, X_BYTES);
            // SAFETY: only reachable through `order` after dotprod detection; `blocks`
            // checked the lengths.
            unsafe { $kernel(nb, [w.as_ptr()], [x.as_ptr()])[0][0] }
        }

        pub(crate) fn $x4(n: usize, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
            let nb = super::blocks_x4(n, QK_K, w, W_BYTES, x, X_BYTES);
            // SAFETY: as for the single-row kernel; `blocks_x4` checked all five lengths.
            unsafe { $kernel(nb, [w.as_ptr()], x.map(|r| r.as_ptr()))[0] }
        }
    };
}

/// The integer sum of the 16 byte products of `$a` and `$b` with `$dot` (exact, so the
/// same for both flavours).
macro_rules! dot16 {
    ($dot:ident, $a:expr, $b:expr) => {
        vaddvq_s32($dot(vdupq_n_s32(0), $a, $b))
    };
}

/// The f32 scale of the Q8_K block at `x`.
///
/// # Safety
/// `x` must be readable for 4 bytes.
#[inline]
pub(crate) unsafe fn q8k_d(x: *const u8) -> f32 {
    // SAFETY: 4 readable bytes (caller); unaligned read.
    unsafe { (x as *const f32).read_unaligned() }
}

/// The 16 sums of 16 quants of the Q8_K block at `x`.
///
/// # Safety
/// `x` must be readable for one Q8_K block.
#[inline]
pub(crate) unsafe fn q8k_bsums(x: *const u8) -> [i32; 16] {
    // SAFETY: the sums are the block's last 32 bytes (caller); unaligned reads.
    std::array::from_fn(|g| unsafe { (x.add(260 + 2 * g) as *const i16).read_unaligned() } as i32)
}

/// The Q8_K quants at `x` (a block), 16 from byte `16 * g` of the quants.
///
/// # Safety
/// `x` must be readable for one Q8_K block and `g < 16`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn q8k_16(x: *const u8, g: usize) -> int8x16_t {
    // SAFETY: the quants start at byte 4 and hold 256 bytes (caller).
    unsafe { vld1q_s8(x.add(4 + 16 * g) as *const i8) }
}

/// The integer dot of a block's 32 weights (`w`) with 32 activation bytes at `x`, in plain
/// integer arithmetic (the scalar tails of ggml's ARM kernels).
///
/// # Safety
/// `x` must be readable for 32 bytes.
#[inline]
pub(crate) unsafe fn idot32(w: &[i8; 32], x: *const u8) -> i32 {
    let mut s = 0i32;
    for (j, &wj) in w.iter().enumerate() {
        // SAFETY: j < 32 (caller guarantees 32 bytes).
        s += wj as i32 * unsafe { *x.add(j) } as i8 as i32;
    }
    s
}

pub(crate) mod activation;
pub(crate) mod bf16;
pub(crate) mod f16;
pub(crate) mod f32;
#[cfg(test)]
mod goldens;
pub(crate) mod iq4_nl;
pub(crate) mod iq4_xs;
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_0;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8_0;
pub(crate) mod tq1_0;
pub(crate) mod tq2_0;

pub(crate) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// How llama.cpp's ARM build multiplies a `ty` matrix of `rows` rows where it repacks the
/// weights at load (with the dot-product extension, `rows % 4 == 0`: Q4_0 and IQ4_NL as
/// 4x4 interleaved rows, one order for every token; Q8_0 likewise, but its gemm (tokens
/// `0..n - n % 4`) adds unfused and its gemv fused; with `rows % 8 == 0`, Q4_K and Q5_K as 8x4,
/// one order for every token, and Q6_K, whose gemm adds unfused and gemv fused). `None` where
/// it uses `vec_dot`.
pub(crate) fn llama_cpp_order(ty: GgmlType, rows: usize) -> Option<crate::order::LlamaCppOrder> {
    use crate::order::{LlamaCppOrder, RepackedDot, TiledDot};
    if crate::dispatch::active_level() != SimdLevel::Dotprod || !rows.is_multiple_of(4) {
        return None;
    }
    let k_quant = |one, x4| {
        rows.is_multiple_of(8)
            .then_some(LlamaCppOrder::Tiled(TiledDot {
                one,
                x4: Some(x4),
                tile: None,
            }))
    };
    Some(match ty {
        GgmlType::Q4_K => return k_quant(q4_k::vec_dot_repack, q4_k::vec_dot_repack_x4),
        GgmlType::Q5_K => return k_quant(q5_k::vec_dot_repack, q5_k::vec_dot_repack_x4),
        // gemm multiplies then adds; gemv's `vmulq` + `vaddq` are contracted by GCC into the
        // fused order of `vec_dot`.
        GgmlType::Q6_K if rows.is_multiple_of(8) => LlamaCppOrder::Repacked(RepackedDot {
            gemm: q6_k::vec_dot_repack,
            gemm_x4: q6_k::vec_dot_repack_x4,
            gemv: q6_k::vec_dot_dotprod,
        }),
        GgmlType::Q4_0 => LlamaCppOrder::Tiled(TiledDot {
            one: q4_0::vec_dot_repack,
            x4: Some(q4_0::vec_dot_repack_x4),
            tile: None,
        }),
        GgmlType::IQ4_NL => LlamaCppOrder::Tiled(TiledDot {
            one: iq4_nl::vec_dot_repack,
            x4: Some(iq4_nl::vec_dot_repack_x4),
            tile: None,
        }),
        GgmlType::Q8_0 => LlamaCppOrder::Repacked(RepackedDot {
            gemm: q8_0::vec_dot_repack_gemm,
            gemm_x4: q8_0::vec_dot_repack_gemm_x4,
            gemv: q8_0::vec_dot_repack_gemv,
        }),
        _ => return None,
    })
}

/// A format's kernels at each aarch64 level; each format's file defines `kernels()`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SimdKernels {
    pub ty: GgmlType,
    pub neon: LevelKernels,
    pub dotprod: LevelKernels,
}

/// Every format's NEON kernels, in one table (one line per format).
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
            tq1_0::kernels(),
            tq2_0::kernels(),
        ]
    })
}

/// The kernels of `ty` written for `level` (`Neon` or `Dotprod`). Only call them once
/// detection has confirmed the level.
pub(crate) fn kernels_at(ty: GgmlType, level: SimdLevel) -> LevelKernels {
    let Some(k) = table().iter().find(|k| k.ty == ty) else {
        return LevelKernels::NONE;
    };
    match level {
        SimdLevel::Neon => k.neon,
        SimdLevel::Dotprod => k.dotprod,
        _ => LevelKernels::NONE,
    }
}

/// `acc + sdot(a, b)`: lane k gains the four products of bytes 4k..4k+3.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: register-only instruction; the dot-product extension is enabled for this
    // function, and callers are only reachable after run-time detection.
    unsafe {
        std::arch::asm!(
            "sdot {r:v}.4s, {a:v}.16b, {b:v}.16b",
            r = inout(vreg) r,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    r
}

/// ggml's `vdotq_s32` stand-in for CPUs without `sdot`: widening products of the low and the
/// high eight bytes, pairwise widened, added; lane k gains bytes 2k, 2k+1, 2k+8 and 2k+9.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn sdot_emul(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let p1 = vmull_s8(vget_high_s8(a), vget_high_s8(b));
    vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)))
}

/// The f16 at `p`, widened.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes; unaligned read.
    let bits = unsafe { (p as *const u16).read_unaligned() };
    half::f16::from_bits(bits).to_f32()
}

/// `acc + v * d`, multiplied then added (ggml's `vmlaq_n_f32`, which is not fused).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn mla_n(acc: float32x4_t, v: float32x4_t, d: f32) -> float32x4_t {
    vaddq_f32(acc, vmulq_n_f32(v, d))
}

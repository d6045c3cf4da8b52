//! Run-time choice of the `vec_dot` kernel per tensor type, made once per process.
//!
//! The level is the best the CPU supports (x86-64: `avx512` > `avx2` > `scalar`; aarch64:
//! `dotprod` > `neon` > `scalar`), unless the environment variable `TORCHLESS_SIMD` names a
//! lower one of the same architecture (read once, at the first dot product). A level the CPU
//! lacks is never used, whatever the variable says, because the kernels would fault. Types
//! without a kernel at the chosen level fall back to the next lower level that has one, down
//! to the scalar reference.
//!
//! Each level reproduces ggml's kernel for the same instruction set, so results differ
//! between levels in the last bits, exactly as llama.cpp's differ between machines.

use std::sync::OnceLock;

use crate::kernel_set::LevelKernels;
use crate::GgmlType;

/// `vec_dot(n, w, x)`: dot of a weight row with an activation row of its `vec_dot_type`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// `vec_dot_x4(n, w, [x0, x1, x2, x3])`: one weight row against four activation rows, each
/// result bit-identical to `vec_dot(n, w, xi)` of the same level (the weight is unpacked once
/// and four independent accumulations overlap, which is what makes it faster).
pub type VecDotX4Fn = fn(usize, &[u8], [&[u8]; 4]) -> [f32; 4];

/// `vec_dot_w4(n, [w0, w1, w2, w3], x)`: four weight rows against one activation row, each
/// result bit-identical to `vec_dot(n, wi, x)` of the same level (four independent
/// accumulations overlap; for single-token matmuls).
pub type VecDotW4Fn = fn(usize, [&[u8]; 4], &[u8]) -> [f32; 4];

/// `tile(n, w, x, out)`: every weight row in `w` against every activation row in `x`, with
/// `out[t * w.len() + r]` the dot of `w[r]` and `x[t]`. `w.len()` must be the kernel's
/// [`Tile::rows`] and `x.len()` from 1 to its [`Tile::toks`]; `out` at least
/// `w.len() * x.len()` long. Each result equals the single-row kernel of the same order bit
/// for bit: a tile only shares loads and unpacking between independent sums.
pub type TileFn = fn(usize, &[&[u8]], &[&[u8]], &mut [f32]);

/// A register-blocked kernel and its shape.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    /// Weight rows per call (exactly).
    pub rows: usize,
    /// Activation rows per call (at most).
    pub toks: usize,
    pub f: TileFn,
    /// The kernel takes the activations widened to f32 (F16 activations converted once per
    /// matmul rather than in every tile) instead of in the vec-dot type's encoding.
    pub x_f32: bool,
    /// The kernel takes its activations packed once per matmul, `toks` tokens per group; it
    /// is then called with the group's bytes as every entry of its activation slice.
    pub pack: Option<TilePack>,
    /// The kernel asks for its own weight rows ahead as it reads them, so the matmul must not
    /// also prefetch whole row groups for it (a burst of prefetches for a group fills the
    /// queues the kernel's loads need).
    pub prefetches: bool,
}

/// How a tile's activations are packed (see [`Tile::pack`]).
#[derive(Clone, Copy, Debug)]
pub struct TilePack {
    /// Bytes of one packed group for rows of `cols` values.
    pub bytes: fn(usize) -> usize,
    /// Packs 1..=`toks` quantized activation rows of `cols` values into one group.
    pub f: fn(usize, &[&[u8]], &mut [u8]),
}

/// An instruction-set level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The portable reference kernels.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 level plus AVX-512 F/BW/VL/VNNI (BF16 used when present).
    Avx512,
    /// aarch64 Advanced SIMD (every aarch64 CPU has it), integer products without `sdot`, as
    /// ggml builds for a CPU without the dot-product extension (e.g. Cortex-A53, Pi 3).
    Neon,
    /// aarch64 NEON plus the dot-product extension (`sdot`, Armv8.2+ optional, Armv8.4+
    /// mandatory; Apple M1, Graviton 2, Pi 5).
    Dotprod,
}

impl SimdLevel {
    /// Every level of every architecture; the order is only meaningful within one
    /// architecture (a level of another one is never detected, so never compared).
    pub const ALL: [SimdLevel; 5] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Neon,
        SimdLevel::Dotprod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Neon => "neon",
            SimdLevel::Dotprod => "dotprod",
        }
    }

    /// Parses a `TORCHLESS_SIMD` value (case-insensitive).
    pub fn parse(s: &str) -> Option<SimdLevel> {
        SimdLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether the level belongs to the architecture this was compiled for (`scalar` does
    /// everywhere).
    pub fn is_native(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2 | SimdLevel::Avx512 => cfg!(target_arch = "x86_64"),
            SimdLevel::Neon | SimdLevel::Dotprod => cfg!(target_arch = "aarch64"),
        }
    }

    /// The levels of this architecture, lowest first.
    pub fn native() -> impl Iterator<Item = SimdLevel> {
        SimdLevel::ALL.into_iter().filter(|l| l.is_native())
    }
}

/// The best level this CPU supports.
pub fn detected_level() -> SimdLevel {
    static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::x86::has_avx512() {
                return SimdLevel::Avx512;
            }
            if crate::x86::has_avx2() {
                return SimdLevel::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if crate::aarch64::has_dotprod() {
                return SimdLevel::Dotprod;
            }
            return SimdLevel::Neon;
        }
        #[allow(unreachable_code)]
        SimdLevel::Scalar
    })
}

/// The level in use: [`detected_level`], lowered by `TORCHLESS_SIMD` if that is set to a
/// lower level. An unknown value is ignored (with a warning on stderr) rather than failing
/// every dot product.
pub fn active_level() -> SimdLevel {
    static ACTIVE: OnceLock<SimdLevel> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let detected = detected_level();
        match std::env::var("TORCHLESS_SIMD") {
            Ok(v) => match SimdLevel::parse(&v).filter(|l| l.is_native()) {
                Some(wanted) => wanted.min(detected),
                None => {
                    let names: Vec<_> = SimdLevel::native().map(|l| l.name()).collect();
                    eprintln!(
                        "TORCHLESS_SIMD={v:?} is not one of {}; using {}",
                        names.join(", "),
                        detected.name()
                    );
                    detected
                }
            },
            Err(_) => detected,
        }
    })
}

/// The scalar reference kernel for `ty`, or `None` for types that are never weights.
pub fn scalar_kernel(ty: GgmlType) -> Option<VecDotFn> {
    crate::format(ty).and_then(|f| f.vec_dot)
}

/// The kernel written for exactly `level` (no fallback), or `None` if there is none or this
/// CPU cannot run that level. For tests and benchmarks that compare levels.
pub fn kernel(ty: GgmlType, level: SimdLevel) -> Option<VecDotFn> {
    if level == SimdLevel::Scalar {
        return scalar_kernel(ty);
    }
    simd_kernels(ty, level).and_then(|k| k.one)
}

/// The SIMD kernel set of `ty` at `level`, if this CPU can run that level.
#[cfg(target_arch = "x86_64")]
fn simd_kernels(ty: GgmlType, level: SimdLevel) -> Option<LevelKernels> {
    (level.is_native() && level <= detected_level()).then(|| crate::x86::kernels_at(ty, level))
}

#[cfg(target_arch = "aarch64")]
fn simd_kernels(ty: GgmlType, level: SimdLevel) -> Option<LevelKernels> {
    (level.is_native() && level <= detected_level()).then(|| crate::aarch64::kernels_at(ty, level))
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_kernels(_: GgmlType, _: SimdLevel) -> Option<LevelKernels> {
    None
}

/// The four-row kernel written for exactly `level`, or `None` (no such kernel, or the CPU
/// cannot run that level).
pub fn kernel_x4(ty: GgmlType, level: SimdLevel) -> Option<VecDotX4Fn> {
    simd_kernels(ty, level).and_then(|k| k.x4)
}

/// The four-weight-row kernel written for exactly `level`, or `None`.
pub fn kernel_w4(ty: GgmlType, level: SimdLevel) -> Option<VecDotW4Fn> {
    simd_kernels(ty, level).and_then(|k| k.w4)
}

/// The `vec_dot`-order tile kernel written for exactly `level`, or `None`.
pub fn kernel_tile(ty: GgmlType, level: SimdLevel) -> Option<Tile> {
    simd_kernels(ty, level).and_then(|k| k.tile)
}

/// The generation (1-3 tokens) tile kernel written for exactly `level`, or `None`.
pub fn kernel_gemv_tile(ty: GgmlType, level: SimdLevel) -> Option<Tile> {
    simd_kernels(ty, level).and_then(|k| k.gemv_tile)
}

/// The best kernel for `ty` at or below `level` that this CPU can run.
pub fn best_kernel(ty: GgmlType, level: SimdLevel) -> Option<VecDotFn> {
    best(ty, level).map(|(_, f)| f)
}

/// [`best_kernel`] with the level it comes from.
fn best(ty: GgmlType, level: SimdLevel) -> Option<(SimdLevel, VecDotFn)> {
    SimdLevel::native()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(|&l| l <= level)
        .find_map(|l| kernel(ty, l).map(|f| (l, f)))
}

/// Table index of a type: ggml's numeric id, which is small and dense enough.
const TABLE_LEN: usize = 64;

struct Table {
    one: [Option<VecDotFn>; TABLE_LEN],
    four: [Option<VecDotX4Fn>; TABLE_LEN],
    four_w: [Option<VecDotW4Fn>; TABLE_LEN],
    tile: [Option<Tile>; TABLE_LEN],
    gemv_tile: [Option<Tile>; TABLE_LEN],
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let level = active_level();
        let mut t = Table {
            one: [None; TABLE_LEN],
            four: [None; TABLE_LEN],
            four_w: [None; TABLE_LEN],
            tile: [None; TABLE_LEN],
            gemv_tile: [None; TABLE_LEN],
        };
        for ty in GgmlType::all() {
            let i = ty.id() as usize;
            if let Some((l, f)) = best(ty, level).filter(|_| i < TABLE_LEN) {
                t.one[i] = Some(f);
                // Only from the same level: the two must agree bit for bit.
                t.four[i] = kernel_x4(ty, l);
                t.four_w[i] = kernel_w4(ty, l);
                t.tile[i] = kernel_tile(ty, l);
                t.gemv_tile[i] = kernel_gemv_tile(ty, l);
            }
        }
        t
    })
}

/// The kernel [`crate::vec_dot`] uses for `ty`, resolved once: for hot loops that call it
/// per output element. `None` for types that cannot be weights of a dot product. The
/// returned function checks that its buffers are long enough for `n` but not that they are
/// exactly one row; callers pass `ty.row_bytes(n)` / `ty.vec_dot_type().row_bytes(n)`.
pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    table().one.get(ty.id() as usize).copied().flatten()
}

/// The four-row kernel matching [`vec_dot_fn`]`(ty)` bit for bit, if the level in use has one
/// for `ty`. Same length contract as [`vec_dot_fn`].
pub fn vec_dot_x4_fn(ty: GgmlType) -> Option<VecDotX4Fn> {
    table().four.get(ty.id() as usize).copied().flatten()
}

/// The tile kernel matching [`vec_dot_fn`]`(ty)` bit for bit, if the level in use has one.
pub fn vec_dot_tile(ty: GgmlType) -> Option<Tile> {
    table().tile.get(ty.id() as usize).copied().flatten()
}

/// The generation tile (1-3 tokens) matching [`vec_dot_fn`]`(ty)` bit for bit, if any.
pub fn vec_dot_gemv_tile(ty: GgmlType) -> Option<Tile> {
    table().gemv_tile.get(ty.id() as usize).copied().flatten()
}

/// The four-weight-row kernel matching [`vec_dot_fn`]`(ty)` bit for bit, if the level in use
/// has one for `ty`. Same length contract as [`vec_dot_fn`].
pub fn vec_dot_w4_fn(ty: GgmlType) -> Option<VecDotW4Fn> {
    table().four_w.get(ty.id() as usize).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(SimdLevel::parse("AVX2"), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse(" scalar\n"), Some(SimdLevel::Scalar));
        assert_eq!(SimdLevel::parse("avx512"), Some(SimdLevel::Avx512));
        assert_eq!(SimdLevel::parse("sse"), None);
        assert!(SimdLevel::Scalar < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512);
    }

    #[test]
    fn every_weight_type_has_a_kernel_and_activations_none() {
        for ty in GgmlType::all() {
            let scalar = scalar_kernel(ty);
            assert_eq!(vec_dot_fn(ty).is_some(), scalar.is_some(), "{ty}");
            assert_eq!(kernel(ty, SimdLevel::Scalar).is_some(), scalar.is_some());
        }
        assert!(vec_dot_fn(GgmlType::Q8_1).is_none());
        assert!(vec_dot_fn(GgmlType::Q8_K).is_none());
        assert!(active_level() <= detected_level());
    }

    /// `scripts/test-aarch64.sh` runs the tests under two emulated CPUs and says which level
    /// each must detect, so that both kernel flavours are known to have run.
    #[test]
    fn detects_the_level_the_test_run_expects() {
        if let Ok(want) = std::env::var("TORCHLESS_EXPECT_LEVEL") {
            assert_eq!(detected_level().name(), want.trim());
        }
        assert!(detected_level().is_native());
    }

    #[test]
    fn levels_above_the_cpu_are_refused() {
        for level in SimdLevel::ALL {
            if level > detected_level() {
                assert!(kernel(GgmlType::Q8_0, level).is_none());
            }
        }
        #[cfg(target_arch = "x86_64")]
        if detected_level() >= SimdLevel::Avx2 {
            assert!(kernel(GgmlType::Q4_1, SimdLevel::Avx2).is_some());
        }
    }
}

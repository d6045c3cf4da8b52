//! Run-time choice of the `vec_dot` kernel per tensor type, made once per process.
//!
//! The level is the best the CPU supports (`avx512` > `avx2` > `scalar`), unless the
//! environment variable `TORCHLESS_SIMD` names a lower one (`scalar`, `avx2` or `avx512`;
//! read once, at the first dot product). A level the CPU lacks is never used, whatever the
//! variable says, because the kernels would fault. Types without a kernel at the chosen level
//! fall back to the next lower level that has one, down to the scalar reference.
//!
//! Each level reproduces ggml's kernel for the same instruction set, so results differ
//! between levels in the last bits, exactly as llama.cpp's differ between machines.

use std::sync::OnceLock;

use crate::GgmlType;

/// `vec_dot(n, w, x)`: dot of a weight row with an activation row of its `vec_dot_type`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// An instruction-set level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The portable reference kernels.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 level plus AVX-512 F/BW/VL/VNNI (BF16 used when present).
    Avx512,
}

impl SimdLevel {
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Parses a `TORCHLESS_SIMD` value (case-insensitive).
    pub fn parse(s: &str) -> Option<SimdLevel> {
        SimdLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
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
            Ok(v) => match SimdLevel::parse(&v) {
                Some(wanted) => wanted.min(detected),
                None => {
                    eprintln!(
                        "TORCHLESS_SIMD={v:?} is not one of scalar, avx2, avx512; using {}",
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
    use GgmlType::*;
    Some(match ty {
        F32 => crate::f32::vec_dot,
        F16 => crate::f16::vec_dot,
        BF16 => crate::bf16::vec_dot,
        Q4_0 => crate::q4_0::vec_dot,
        Q4_1 => crate::q4_1::vec_dot,
        Q5_0 => crate::q5_0::vec_dot,
        Q5_1 => crate::q5_1::vec_dot,
        Q8_0 => crate::q8_0::vec_dot,
        Q2_K => crate::q2_k::vec_dot,
        Q3_K => crate::q3_k::vec_dot,
        Q4_K => crate::q4_k::vec_dot,
        Q5_K => crate::q5_k::vec_dot,
        Q6_K => crate::q6_k::vec_dot,
        _ => return None,
    })
}

/// The kernel written for exactly `level` (no fallback), or `None` if there is none or this
/// CPU cannot run that level. For tests and benchmarks that compare levels.
pub fn kernel(ty: GgmlType, level: SimdLevel) -> Option<VecDotFn> {
    if level > detected_level() {
        return None;
    }
    match level {
        SimdLevel::Scalar => scalar_kernel(ty),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => crate::x86::avx2_kernel(ty),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => crate::x86::avx512_kernel(ty),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// The best kernel for `ty` at or below `level` that this CPU can run.
pub fn best_kernel(ty: GgmlType, level: SimdLevel) -> Option<VecDotFn> {
    SimdLevel::ALL
        .into_iter()
        .rev()
        .filter(|&l| l <= level)
        .find_map(|l| kernel(ty, l))
}

/// Table index of a type: ggml's numeric id, which is small and dense enough.
const TABLE_LEN: usize = 64;

fn table() -> &'static [Option<VecDotFn>; TABLE_LEN] {
    static TABLE: OnceLock<[Option<VecDotFn>; TABLE_LEN]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let level = active_level();
        let mut t = [None; TABLE_LEN];
        for ty in GgmlType::all() {
            if let Some(slot) = t.get_mut(ty.id() as usize) {
                *slot = best_kernel(ty, level);
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
    table().get(ty.id() as usize).copied().flatten()
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

//! Hashes of ggml's own ARM `vec_dot` (llama.cpp's checkout of `scripts/arch-fixtures`,
//! cross-built by `scripts/quant-goldens/aarch64.sh` with aarch64-linux-gnu-gcc 12 for
//! `-march=armv8.2-a+dotprod` (the `dotprod` level: no i8mm, no SVE, no fp16 vector
//! arithmetic) and `-march=armv8-a` (the `neon` level), run under qemu) on
//! `vec_dot_hash.c`'s data, one run per line of `tests/data/aarch64-vec-dot.txt`:
//! `LEVEL TYPE K M N act 0x<activation bytes hash> dot 0x<dot products hash>`. Lines of
//! level `dotprod-repack` are whole `ggml_mul_mat`s with the weights in ggml's CPU_REPACK
//! buffer (llama.cpp's default), `LEVEL-plain` ones with the weights in an ordinary buffer
//! (the types that are not repacked), checked with the kernels `order::matmul_plan` picks.

use crate::dispatch::{kernel, SimdLevel};
use crate::GgmlType;

const GOLDENS: &str = include_str!("../../tests/data/aarch64-vec-dot.txt");

/// Every kernel this CPU can run must give ggml's ARM bits for its level, and the activation
/// quantizers ggml's ARM bytes.
#[test]
fn kernels_equal_ggml_arm() {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut bad = Vec::new();
    let mut checked = 0;
    for line in GOLDENS.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [level, name, k, m, n, "act", act, "dot", dot] = f[..] else {
            panic!("bad golden line {line:?}");
        };
        let ty = GgmlType::from_name(name).unwrap();
        let shape: (usize, usize, usize) =
            (k.parse().unwrap(), m.parse().unwrap(), n.parse().unwrap());
        let (got_act, _) = crate::testkit::vec_dot_hash(ty, shape, None);
        if got_act != hex(act) {
            bad.push(format!("{name} {shape:?}: activation bytes differ"));
        }
        if let Some(whole) = level
            .strip_suffix("-repack")
            .or(level.strip_suffix("-plain"))
        {
            // A whole matmul: the plan at the active level, which must be the one measured.
            if crate::dispatch::active_level() != SimdLevel::parse(whole).unwrap() {
                continue;
            }
            let plan = crate::order::matmul_plan(ty, shape.1, shape.2).unwrap();
            let by_token = |t: usize| {
                if t < plan.n_first {
                    plan.first.one
                } else {
                    plan.rest.one
                }
            };
            checked += 1;
            if crate::testkit::vec_dot_hash(ty, shape, Some(&by_token)).1 != hex(dot) {
                bad.push(format!("{name} {level} {shape:?}: matmul differs"));
            }
            continue;
        }
        let level = SimdLevel::parse(level).unwrap();
        let Some(f) = kernel(ty, level) else {
            continue;
        };
        checked += 1;
        if crate::testkit::vec_dot_hash(ty, shape, Some(&|_| f)).1 != hex(dot) {
            bad.push(format!("{name} {level:?} {shape:?}: dot products differ"));
        }
    }
    eprintln!("{checked} golden runs checked");
    assert!(checked > 0 && bad.is_empty(), "{}", bad.join("\n"));
}

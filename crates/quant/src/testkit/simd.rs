//! Shared checks for the kernel tests: every SIMD level this CPU has (x86-64 or aarch64),
//! called directly.

use crate::dispatch::{kernel, SimdLevel, VecDotFn};
use crate::testkit::{fixture_rows, hex, load_dot_fixture, source_rows};
use crate::GgmlType;

/// Which levels must reproduce the fixture's `ggml_vec_dot` bit for bit (it was computed
/// by ggml's AVX-512 build); the others are held to 1e-6 of `abs_dot_f64`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Exact {
    /// Both levels: the float order does not depend on the vector width.
    Both,
    /// Only `avx512`: the `avx2` kernel uses narrower accumulators, as ggml's would.
    Avx512,
}

/// The SIMD kernels for `ty` this CPU can run, by level.
pub fn simd_levels(ty: GgmlType) -> Vec<(SimdLevel, VecDotFn)> {
    let found: Vec<_> = SimdLevel::native()
        .filter(|&l| l != SimdLevel::Scalar)
        .filter_map(|l| kernel(ty, l).map(|f| (l, f)))
        .collect();
    if found.is_empty() {
        eprintln!("{ty}: no SIMD level on this CPU, kernel tests skipped");
    }
    found
}

fn weight_rows(ty: GgmlType) -> Vec<Vec<u8>> {
    if ty == GgmlType::F32 {
        source_rows()
            .iter()
            .map(|r| r.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect()
    } else {
        fixture_rows(ty.name())
    }
}

/// The 12 fixture rows against the activation ggml's CPU quantizer produced.
pub fn check_fixture(ty: GgmlType, exact: Exact) {
    let fx = load_dot_fixture(ty.name());
    let n = fx["n"].as_u64().unwrap() as usize;
    let xq = hex(fx["xq_cpu_hex"].as_str().unwrap());
    let rows = fx["rows"].as_array().unwrap();
    let weights = weight_rows(ty);
    for (level, f) in simd_levels(ty) {
        // The fixtures come from ggml's x86 build; other architectures sum in their own order.
        let x86 = matches!(level, SimdLevel::Avx2 | SimdLevel::Avx512);
        let bit_exact = x86 && (exact == Exact::Both || level == SimdLevel::Avx512);
        for (i, (row, w)) in rows.iter().zip(&weights).enumerate() {
            let got = f(n, w, &xq);
            let want = row["ggml_vec_dot"].as_f64().unwrap() as f32;
            if bit_exact {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{ty} {level:?} row {i}: {got} vs ggml {want}"
                );
            } else {
                let tol = 1e-6 * row["abs_dot_f64"].as_f64().unwrap() as f32;
                assert!(
                    (got - want).abs() <= tol,
                    "{ty} {level:?} row {i}: {got} vs ggml {want}"
                );
            }
        }
    }
}

/// The four-row kernel at every level must give each row exactly what the single-row
/// kernel of the same level gives, on random and adversarial rows.
pub fn check_x4(ty: GgmlType) {
    let xty = ty.vec_dot_type();
    let mut rng = Rng::new(ty.id() as u64 + 99);
    for level in SimdLevel::native().filter(|&l| l != SimdLevel::Scalar) {
        let (Some(one), Some(four)) = (kernel(ty, level), crate::dispatch::kernel_x4(ty, level))
        else {
            continue;
        };
        for how in [
            Scales::Random,
            Scales::Max,
            Scales::Subnormal,
            Scales::Mixed,
        ] {
            for nb in [1usize, 3, 64] {
                let n = nb * ty.block_size();
                let w = blocks_of(&mut rng, ty, nb, how, false, false);
                let xs: Vec<Vec<u8>> = (0..4)
                    .map(|_| blocks_of(&mut rng, xty, nb, how, false, true))
                    .collect();
                let got = four(n, &w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (r, x) in xs.iter().enumerate() {
                    let want = one(n, &w, x);
                    assert_eq!(
                        got[r].to_bits(),
                        want.to_bits(),
                        "{ty} {level:?} {how:?} row {r}"
                    );
                }
            }
        }
    }
}

/// The four-weight-row kernel at every level must give each row exactly what the
/// single-row kernel of the same level gives.
pub fn check_w4(ty: GgmlType) {
    let xty = ty.vec_dot_type();
    let mut rng = Rng::new(ty.id() as u64 + 199);
    for level in SimdLevel::native().filter(|&l| l != SimdLevel::Scalar) {
        let (Some(one), Some(four)) = (kernel(ty, level), crate::dispatch::kernel_w4(ty, level))
        else {
            continue;
        };
        for how in [
            Scales::Random,
            Scales::Max,
            Scales::Subnormal,
            Scales::Mixed,
        ] {
            for nb in [1usize, 3, 64] {
                let n = nb * ty.block_size();
                let ws: Vec<Vec<u8>> = (0..4)
                    .map(|_| blocks_of(&mut rng, ty, nb, how, false, false))
                    .collect();
                let x = blocks_of(&mut rng, xty, nb, how, false, true);
                let got = four(n, [&ws[0], &ws[1], &ws[2], &ws[3]], &x);
                for (r, w) in ws.iter().enumerate() {
                    let want = one(n, w, &x);
                    assert_eq!(
                        got[r].to_bits(),
                        want.to_bits(),
                        "{ty} {level:?} {how:?} row {r}"
                    );
                }
            }
        }
    }
}

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Roughly normal: sum of uniforms, centred.
    pub fn normal(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum::<f32>()
            - 2.0
    }
}

/// A row of `n` f16 values (little-endian bytes) of one of three kinds: 0 random, 1 random
/// over a wide exponent range, 2 adversarial (signed zeros, the f16 extremes, a subnormal).
pub fn f16_row(rng: &mut Rng, n: usize, kind: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| {
            let v = match kind {
                0 => rng.normal(),
                1 => rng.normal() * (2f32).powi(rng.below(40) as i32 - 24),
                _ => [0.0, -0.0, 65504.0, -65504.0, 6e-8][rng.below(5) as usize],
            };
            half::f16::from_f32(v).to_le_bytes()
        })
        .collect()
}

/// How the f16 scales of a generated block are drawn.
#[derive(Clone, Copy, Debug)]
enum Scales {
    Random,
    Max,
    Subnormal,
    Zero,
    NegZero,
    Mixed,
}

fn f16_scale(rng: &mut Rng, how: Scales) -> u16 {
    let sign = if rng.next() & 1 == 1 { 0x8000 } else { 0 };
    match how {
        Scales::Random => {
            let v = rng.normal() * (2f32).powi(rng.below(12) as i32 - 8);
            half::f16::from_f32(v).to_bits()
        }
        Scales::Max => sign | 0x7bff,
        Scales::Subnormal => sign | (1 + rng.below(0x3ff) as u16),
        Scales::Zero => 0,
        Scales::NegZero => 0x8000,
        Scales::Mixed => {
            let pick = [
                Scales::Random,
                Scales::Max,
                Scales::Subnormal,
                Scales::Zero,
                Scales::NegZero,
            ];
            let how = pick[rng.below(pick.len() as u64) as usize];
            f16_scale(rng, how)
        }
    }
}

/// Leading f16 fields of a block: scale (and offset or scaled sum) of the 32-wide types.
fn f16_fields(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => 2,
        _ => 1,
    }
}

/// `nb` random blocks of `ty`. Activation quants stay in [-127, 127] like every ggml
/// activation quantizer's output; `extreme` pins every quant to its largest magnitude.
fn blocks_of(
    rng: &mut Rng,
    ty: GgmlType,
    nb: usize,
    how: Scales,
    extreme: bool,
    activation: bool,
) -> Vec<u8> {
    let size = ty.type_size();
    let mut out = vec![0u8; nb * size];
    for b in out.chunks_exact_mut(size) {
        for byte in b.iter_mut() {
            *byte = if extreme { 0xff } else { rng.next() as u8 };
            if activation && *byte == 0x80 {
                *byte = 0x81;
            }
        }
        if extreme && activation {
            let v = if rng.next() & 1 == 1 { 127u8 } else { 0x81 };
            b.iter_mut().for_each(|q| *q = v);
        }
        for f in 0..f16_fields(ty) {
            b[2 * f..2 * f + 2].copy_from_slice(&f16_scale(rng, how).to_le_bytes());
        }
    }
    out
}

fn assert_close(ty: GgmlType, level: SimdLevel, what: &str, got: f32, want: f32, scale: f64) {
    let tol = (1e-5 * scale) as f32;
    assert!(
        (got - want).abs() <= tol || got.to_bits() == want.to_bits(),
        "{ty} {level:?} {what}: {got} vs scalar {want} (tol {tol})"
    );
}

/// Block-format kernels against the scalar reference on random and adversarial rows.
/// Tolerance: 1e-5 of the sum of the blocks' absolute contributions, which covers the
/// different summation order (8 lane accumulators and FMA instead of one running sum).
pub fn check_against_scalar(ty: GgmlType) {
    let scalar = kernel(ty, SimdLevel::Scalar).unwrap();
    let (wb, xty) = (ty.type_size(), ty.vec_dot_type());
    let xb = xty.type_size();
    let mut rng = Rng::new(ty.id() as u64 + 1);
    let cases = [
        (Scales::Random, false),
        (Scales::Random, true),
        (Scales::Max, true),
        (Scales::Max, false),
        (Scales::Subnormal, false),
        (Scales::Zero, false),
        (Scales::NegZero, false),
        (Scales::Mixed, false),
        (Scales::Mixed, true),
    ];
    for (level, f) in simd_levels(ty) {
        for &(how, extreme) in &cases {
            for nb in [1usize, 2, 3, 8, 17, 64] {
                let n = nb * ty.block_size();
                let w = blocks_of(&mut rng, ty, nb, how, extreme, false);
                let x = blocks_of(&mut rng, xty, nb, how, extreme, true);
                let scale: f64 = (0..nb)
                    .map(|b| {
                        let (wb, xb) = (&w[b * wb..(b + 1) * wb], &x[b * xb..(b + 1) * xb]);
                        scalar(ty.block_size(), wb, xb).abs() as f64
                    })
                    .sum();
                let what = format!("{how:?} extreme={extreme} blocks={nb}");
                assert_close(ty, level, &what, f(n, &w, &x), scalar(n, &w, &x), scale);
            }
        }
        let n = 4 * ty.block_size();
        let zero_w = vec![0u8; 4 * wb];
        let x = blocks_of(&mut rng, xty, 4, Scales::Random, false, true);
        assert_eq!(
            f(n, &zero_w, &x),
            scalar(n, &zero_w, &x),
            "{ty} {level:?}: all-zero row"
        );
    }
}

/// Float-format kernels (`to_bits` turns an f32 into the format's element bits) against
/// the scalar reference, with lengths that exercise every tail.
pub fn check_float_against_scalar(ty: GgmlType, to_bits: fn(f32) -> Vec<u8>) {
    let scalar = kernel(ty, SimdLevel::Scalar).unwrap();
    let mut rng = Rng::new(ty.id() as u64 + 7);
    let row = |rng: &mut Rng, n: usize, kind: u64| -> Vec<f32> {
        (0..n)
            .map(|_| match kind {
                0 => rng.normal(),
                1 => rng.normal() * 1e-30, // f32 subnormal products
                2 => [0.0, -0.0, 1.0, -65504.0, 65504.0][rng.below(5) as usize],
                _ => rng.normal() * (2f32).powi(rng.below(30) as i32 - 15),
            })
            .collect()
    };
    for (level, f) in simd_levels(ty) {
        for n in [1usize, 7, 16, 31, 32, 33, 64, 100, 128, 512, 1000, 4099] {
            for kind in 0..4 {
                let (a, b) = (row(&mut rng, n, kind), row(&mut rng, n, kind));
                let (wa, xb): (Vec<u8>, Vec<u8>) = (
                    a.iter().flat_map(|&v| to_bits(v)).collect(),
                    b.iter().flat_map(|&v| to_bits(v)).collect(),
                );
                let mut da = vec![0f32; n];
                let mut db = vec![0f32; n];
                crate::dequantize_row(ty, &wa, &mut da).unwrap();
                crate::dequantize_row(ty, &xb, &mut db).unwrap();
                let scale: f64 = da.iter().zip(&db).map(|(p, q)| (p * q).abs() as f64).sum();
                let what = format!("n={n} kind={kind}");
                assert_close(ty, level, &what, f(n, &wa, &xb), scalar(n, &wa, &xb), scale);
            }
        }
    }
}

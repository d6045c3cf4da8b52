//! Test support for the K-quant SIMD kernels: fixture comparison, random and adversarial
//! super-blocks, whole-matmul hashes, and the scalar-vs-SIMD tolerance.
use crate::k_common::QK_K;
use crate::q8_k;
use crate::testkit::{fixture_rows, hex, load_dot_fixture};

pub type Kernel = fn(usize, &[u8], &[u8]) -> f32;
pub type KernelX4 = fn(usize, &[u8], [&[u8]; 4]) -> [f32; 4];
type Dequantize = fn(&[u8], &mut [f32]);

#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    crate::x86::has_avx2()
}

#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    crate::x86::has_avx512()
}

/// What the generic tests need to know about a weight format.
pub struct Format {
    pub name: &'static str,
    pub block_bytes: usize,
    /// Offset of the f16 scale of scales.
    pub d: usize,
    /// Offset of the f16 scale of mins, for the asymmetric formats.
    pub dmin: Option<usize>,
    pub dequantize: Dequantize,
}

pub const Q2K: Format = Format {
    name: "Q2_K",
    block_bytes: crate::q2_k::BLOCK_BYTES,
    d: 80,
    dmin: Some(82),
    dequantize: crate::q2_k::dequantize,
};
pub const Q3K: Format = Format {
    name: "Q3_K",
    block_bytes: crate::q3_k::BLOCK_BYTES,
    d: 108,
    dmin: None,
    dequantize: crate::q3_k::dequantize,
};
pub const Q4K: Format = Format {
    name: "Q4_K",
    block_bytes: crate::q4_k::BLOCK_BYTES,
    d: 0,
    dmin: Some(2),
    dequantize: crate::q4_k::dequantize,
};
pub const Q5K: Format = Format {
    name: "Q5_K",
    block_bytes: crate::q5_k::BLOCK_BYTES,
    d: 0,
    dmin: Some(2),
    dequantize: crate::q5_k::dequantize,
};
pub const Q6K: Format = Format {
    name: "Q6_K",
    block_bytes: crate::q6_k::BLOCK_BYTES,
    d: 208,
    dmin: None,
    dequantize: crate::q6_k::dequantize,
};

/// The 12 fixture rows dotted with ggml's CPU-quantized activation must give exactly the
/// `ggml_vec_dot` values ggml's x86 kernel produced on this kind of machine.
pub fn check_fixture_bit_exact(name: &str, level: &str, k: Kernel) {
    let fx = load_dot_fixture(name);
    let n = fx["n"].as_u64().unwrap() as usize;
    let xq = hex(fx["xq_cpu_hex"].as_str().unwrap());
    let mut bad = Vec::new();
    for (i, (row, w)) in fx["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fixture_rows(name))
        .enumerate()
    {
        let want = row["ggml_vec_dot"].as_f64().unwrap() as f32;
        let got = k(n, &w, &xq);
        if got.to_bits() != want.to_bits() {
            bad.push(format!("row {i}: {got:e} vs ggml {want:e}"));
        }
    }
    assert!(bad.is_empty(), "{name} {level}: {}", bad.join("; "));
}

/// splitmix64, enough randomness for test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn put_f16(b: &mut [u8], off: usize, bits: u16) {
    b[off..off + 2].copy_from_slice(&bits.to_le_bytes());
}

/// A Q8_K block with arbitrary quants (including -128) and consistent bsums.
pub fn q8k_block(d: f32, qs: &[i8]) -> Vec<u8> {
    let mut b = vec![0u8; q8_k::BLOCK_BYTES];
    b[..4].copy_from_slice(&d.to_le_bytes());
    for (o, &q) in b[4..260].iter_mut().zip(qs) {
        *o = q as u8;
    }
    for g in 0..16 {
        let s: i32 = qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
        b[260 + 2 * g..262 + 2 * g].copy_from_slice(&(s as i16).to_le_bytes());
    }
    b
}

/// Upper bound of the magnitudes the kernels add up: sum over elements of |x| times
/// (|scale part| + |min part|) of the weight, in f64.
fn abs_scale(f: &Format, w: &[u8], x: &[u8]) -> f64 {
    let n = w.len() / f.block_bytes * QK_K;
    let mut xd = vec![0f32; n];
    q8_k::dequantize(x, &mut xd);
    let part = |zero: Option<usize>| {
        let mut w2 = w.to_vec();
        if let Some(off) = zero {
            for b in w2.chunks_exact_mut(f.block_bytes) {
                put_f16(b, off, 0);
            }
        }
        let mut v = vec![0f32; n];
        (f.dequantize)(&w2, &mut v);
        v.iter()
            .zip(&xd)
            .map(|(&a, &b)| (a as f64 * b as f64).abs())
            .sum::<f64>()
    };
    match f.dmin {
        Some(dmin) => part(Some(dmin)) + part(Some(f.d)),
        None => part(None),
    }
}

/// Weight rows of `nb` blocks: random bytes with the f16 scales forced to `d`/`dmin`
/// (random moderate values when `None`).
fn weights(f: &Format, rng: &mut Rng, nb: usize, d: Option<u16>, dmin: Option<u16>) -> Vec<u8> {
    let mut w = vec![0u8; nb * f.block_bytes];
    rng.bytes(&mut w);
    for b in w.chunks_exact_mut(f.block_bytes) {
        // Exponents 2^-14..2^1 with random sign and mantissa.
        let rnd =
            |rng: &mut Rng| (rng.next() as u16 & 0x83ff) | ((rng.next() % 16 + 1) as u16) << 10;
        let v = d.unwrap_or_else(|| rnd(rng));
        put_f16(b, f.d, v);
        if let Some(off) = f.dmin {
            let v = dmin.unwrap_or_else(|| rnd(rng));
            put_f16(b, off, v);
        }
    }
    w
}

fn activations(rng: &mut Rng, nb: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..nb * QK_K).map(|_| rng.unit() * 3.0).collect();
    let mut q = vec![0u8; nb * q8_k::BLOCK_BYTES];
    q8_k::quantize(&x, &mut q);
    q
}

pub use super::ggml_side_values;

/// A whole `ggml_mul_mat` of an `m x k` weight matrix (rows quantized by ggml from
/// [`ggml_side_values`] scaled by 1, 2, 4, ...) with `n` F32 tokens, computed with
/// `kernel(t)` for token `t`, must hash (FNV-1a over the output bits, token-major) to the
/// value llama.cpp b11434 produced on this kind of machine.
pub fn check_matmul_hash(
    f: &Format,
    quantize: fn(&[f32], &mut [u8]),
    (k, m, n): (usize, usize, usize),
    kernel: &dyn Fn(usize) -> Kernel,
    want: u64,
) {
    let nb = k / QK_K;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut w = vec![0u8; m * nb * f.block_bytes];
    for (r, row) in w.chunks_exact_mut(nb * f.block_bytes).enumerate() {
        quantize(&ggml_side_values(&mut state, k, (1 << (r % 3)) as f32), row);
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for t in 0..n {
        let v = ggml_side_values(&mut state, k, (1 << (t % 2)) as f32);
        let mut xq = vec![0u8; nb * q8_k::BLOCK_BYTES];
        q8_k::quantize(&v, &mut xq);
        for row in w.chunks_exact(nb * f.block_bytes) {
            for b in kernel(t)(k, row, &xq).to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    assert_eq!(h, want, "{} {k} x {m} times {n} tokens", f.name);
}

/// A four-row kernel must give, per row, exactly the bits of its one-row kernel: on
/// random rows of several lengths and with four different activations per call.
pub fn check_x4(f: &Format, one: Kernel, four: KernelX4) {
    let mut rng = Rng::new(0x4444 ^ f.block_bytes as u64);
    for &nb in &[1usize, 2, 7, 27] {
        let w = weights(f, &mut rng, nb, None, None);
        let xs: Vec<Vec<u8>> = (0..4).map(|_| activations(&mut rng, nb)).collect();
        let n = nb * QK_K;
        let got = four(n, &w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
        for (r, g) in got.iter().enumerate() {
            let want = one(n, &w, &xs[r]);
            assert_eq!(g.to_bits(), want.to_bits(), "{} nb {nb} row {r}", f.name);
        }
    }
}

/// A tile kernel (`rows` weight rows by up to `toks` tokens, `out[t * rows + r]`) must give
/// `one`'s bits for every pair, at every token count, on random rows and on rows of
/// all-ones bytes (the largest codes) against activations at the int8 extremes.
pub fn check_tile(
    f: &Format,
    one: Kernel,
    tile: crate::dispatch::TileFn,
    pack: Option<crate::dispatch::TilePack>,
    rows: usize,
    toks: usize,
) {
    let mut rng = Rng::new(0x7171 ^ f.block_bytes as u64);
    for &nb in &[1usize, 3, 8] {
        let n = nb * QK_K;
        let mut ws: Vec<Vec<u8>> = (0..rows)
            .map(|_| weights(f, &mut rng, nb, None, None))
            .collect();
        let mut xs: Vec<Vec<u8>> = (0..toks).map(|_| activations(&mut rng, nb)).collect();
        if nb == 3 {
            // All-ones bytes with a random row's (finite) scales.
            let mut full = vec![0xffu8; nb * f.block_bytes];
            for (b, src) in full
                .chunks_exact_mut(f.block_bytes)
                .zip(ws[1].chunks_exact(f.block_bytes))
            {
                b[f.d..f.d + 2].copy_from_slice(&src[f.d..f.d + 2]);
            }
            ws[0] = full;
            let hi: Vec<i8> = (0..n)
                .map(|i| if i % 2 == 0 { 127 } else { -128 })
                .collect();
            xs[0] = hi.chunks(QK_K).flat_map(|c| q8k_block(0.5, c)).collect();
        }
        for m in 1..=toks {
            let wr: Vec<&[u8]> = ws.iter().map(|w| w.as_slice()).collect();
            let xr: Vec<&[u8]> = xs[..m].iter().map(|x| x.as_slice()).collect();
            let mut out = vec![0f32; m * rows];
            match pack {
                Some(p) => {
                    let mut packed = vec![0u8; (p.bytes)(n)];
                    (p.f)(n, &xr, &mut packed);
                    tile(n, &wr, &vec![packed.as_slice(); m], &mut out);
                }
                None => tile(n, &wr, &xr, &mut out),
            }
            for t in 0..m {
                for r in 0..rows {
                    let want = one(n, &ws[r], &xs[t]);
                    assert_eq!(
                        out[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{} nb {nb} tokens {m}: row {r} token {t}",
                        f.name
                    );
                }
            }
        }
    }
}

/// Random and adversarial rows: every level must be within a few ulps (relative to the
/// sum of magnitudes) of the scalar kernel, and all levels must agree bit for bit (they
/// share ggml's float order and differ only in how the exact integers are formed).
pub fn check_against_scalar(f: &Format, scalar: Kernel, levels: &[(&str, Kernel)]) {
    let mut rng = Rng::new(0x5eed ^ f.block_bytes as u64);
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for &nb in &[1usize, 2, 3, 7, 16, 45] {
        for rep in 0..4 {
            let w = weights(f, &mut rng, nb, None, None);
            let x = activations(&mut rng, nb);
            cases.push((format!("random nb={nb} #{rep}"), w, x));
        }
    }
    let extremes: [i8; 4] = [127, -127, -128, 0];
    for (label, d, dmin) in [
        ("max scales", 0x7bffu16, 0x7bffu16),
        ("negative max", 0xfbff, 0xfbff),
        ("negative zero", 0x8000, 0x8000),
        ("extreme mins", 0x0001, 0x7bff),
        ("subnormal", 0x0001, 0x0001),
    ] {
        for fill in [0x00u8, 0xff, 0x55, 0xaa] {
            for &q in &extremes {
                let nb = 3;
                let mut w = weights(f, &mut rng, nb, Some(d), Some(dmin));
                for b in w.chunks_exact_mut(f.block_bytes) {
                    let keep: Vec<(usize, [u8; 2])> = std::iter::once(f.d)
                        .chain(f.dmin)
                        .map(|o| (o, [b[o], b[o + 1]]))
                        .collect();
                    b.fill(fill);
                    for (o, v) in keep {
                        b[o..o + 2].copy_from_slice(&v);
                    }
                }
                let mut x = Vec::new();
                for i in 0..nb {
                    let qs: Vec<i8> = (0..QK_K)
                        .map(|e| {
                            if (e + i) % 3 == 0 {
                                q
                            } else {
                                extremes[(e + i) % 4]
                            }
                        })
                        .collect();
                    x.extend(q8k_block(1e20f32.powi(i as i32 - 1), &qs));
                }
                cases.push((format!("{label} fill {fill:#x} q {q}"), w, x));
            }
        }
    }
    // All-zero weights and activations.
    cases.push((
        "all zero".into(),
        vec![0u8; 2 * f.block_bytes],
        vec![0u8; 2 * q8_k::BLOCK_BYTES],
    ));
    for (label, w, x) in &cases {
        let n = w.len() / f.block_bytes * QK_K;
        let want = scalar(n, w, x);
        let scale = abs_scale(f, w, x);
        let nb = (n / QK_K) as f64;
        let tol = 2.0 * (nb + 16.0) * f32::EPSILON as f64 * scale;
        let mut first: Option<f32> = None;
        for (lvl, k) in levels {
            let got = k(n, w, x);
            let close = if want.is_finite() {
                (got as f64 - want as f64).abs() <= tol
            } else {
                got.is_nan() == want.is_nan()
            };
            assert!(
                close,
                "{} {lvl} {label}: {got:e} vs scalar {want:e} (tol {tol:e})",
                f.name
            );
            match first {
                None => first = Some(got),
                Some(v) => assert!(
                    v.to_bits() == got.to_bits(),
                    "{} {lvl} {label}: {got:e} differs from first level {v:e}",
                    f.name
                ),
            }
        }
    }
}

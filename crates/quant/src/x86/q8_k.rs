//! Q8_K activation quantizer on AVX2, byte for byte the scalar `crate::q8_k::quantize`.
//!
//! ggml's x86 build has no SIMD `quantize_row_q8_K`: its CPU `from_float` for Q8_K is the
//! reference quantizer, so the scalar bytes are also what llama.cpp feeds its K-quant dots on
//! this machine and there is only one variant to match.

use std::arch::x86_64::*;

use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES;

/// Safe entry: quantizes `src` (a multiple of 256 values) into `dst` (292 bytes per 256).
/// Falls back to the scalar quantizer where AVX2 is missing, so callers need no dispatch.
pub(crate) fn quantize_avx2(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK_K) && dst.len() == src.len() / QK_K * BLOCK_BYTES,
        "quantize Q8_K: {} values into {} bytes",
        src.len(),
        dst.len()
    );
    if !super::has_avx2() {
        return crate::q8_k::quantize(src, dst);
    }
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        // SAFETY: AVX2 was detected above; `x` and `b` are exactly one block long.
        unsafe { block_avx2(x.as_ptr(), b.as_mut_ptr()) }
    }
}

/// One block: 256 floats at `x` into 292 bytes at `out`.
///
/// # Safety
/// AVX2 must be available; `x` readable for 256 f32, `out` writable for 292 bytes.
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(x: *const f32, out: *mut u8) {
    // SAFETY (whole body): every access is within the 256 inputs / 292 output bytes the
    // caller guarantees; loads and stores are the unaligned kinds.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        // `max_ps(a, m)` returns `m` when `a` is NaN, so NaNs are skipped as by the scalar
        // `ax > amax` test.
        let mut vmax = _mm256_setzero_ps();
        for k in 0..QK_K / 8 {
            let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * k)));
            vmax = _mm256_max_ps(a, vmax);
        }
        let lanes: [f32; 8] = std::mem::transmute(vmax);
        let amax = lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m });
        if amax == 0.0 {
            std::ptr::write_bytes(out, 0, BLOCK_BYTES);
            return;
        }
        // The scalar loop keeps the first value reaching the largest magnitude.
        let target = _mm256_set1_ps(amax);
        let mut max = 0f32;
        for k in 0..QK_K / 8 {
            let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * k)));
            let hit = _mm256_movemask_ps(_mm256_cmp_ps(a, target, _CMP_EQ_OQ));
            if hit != 0 {
                max = *x.add(8 * k + hit.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let vs = _mm256_set1_ps(iscale);
        // nearest_int: the magic add puts the rounded integer in the low mantissa bits. The
        // multiply and add stay separate roundings, as in the scalar code.
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let cap = _mm256_set1_epi32(127);
        let low_byte = _mm256_set1_epi32(0xff);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let qs = out.add(4);
        let ones = _mm256_set1_epi8(1);
        let mut sums4 = [_mm256_setzero_si256(); 8];
        for (c, s4) in sums4.iter_mut().enumerate() {
            let mut v = [_mm256_setzero_si256(); 4];
            for (k, v) in v.iter_mut().enumerate() {
                let f = _mm256_loadu_ps(x.add(32 * c + 8 * k));
                let t = _mm256_add_ps(_mm256_mul_ps(vs, f), magic);
                let q = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), mant), bias);
                // `as i8` keeps the low byte; masking first makes the unsigned packs exact.
                *v = _mm256_and_si256(_mm256_min_epi32(q, cap), low_byte);
            }
            let p = _mm256_packus_epi16(
                _mm256_packus_epi32(v[0], v[1]),
                _mm256_packus_epi32(v[2], v[3]),
            );
            let bytes = _mm256_permutevar8x32_epi32(p, order);
            _mm256_storeu_si256(qs.add(32 * c) as *mut __m256i, bytes);
            // Sums of 4 consecutive quants; pairs of sums make the 16-wide bsums below.
            *s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, bytes), _mm256_set1_epi16(1));
        }
        let mut g = [_mm256_setzero_si256(); 2];
        for (h, g) in g.iter_mut().enumerate() {
            let s = &sums4[4 * h..4 * h + 4];
            let t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            *g = _mm256_permutevar8x32_epi32(t, order);
        }
        // |bsum| <= 16 * 128 fits i16, so the saturating pack never saturates.
        let b16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(g[0], g[1]), 0b11_01_10_00);
        _mm256_storeu_si256(out.add(260) as *mut __m256i, b16);
        (out as *mut f32).write_unaligned(1.0 / iscale);
    }
}

/// Shared test support for the K-quant kernels: fixture comparison, random and adversarial
/// super-blocks, and the scalar-vs-SIMD tolerance.
#[cfg(test)]
pub(crate) mod ktest {
    use crate::k_common::QK_K;
    use crate::q8_k;
    use crate::testutil::{fixture_rows, hex, load_dot_fixture};

    pub type Kernel = fn(usize, &[u8], &[u8]) -> f32;
    pub type KernelX4 = fn(usize, &[u8], [&[u8]; 4]) -> [f32; 4];
    type Dequantize = fn(&[u8], &mut [f32]);

    pub fn has_avx2() -> bool {
        crate::x86::has_avx2()
    }

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

    /// xorshift64 values in [-1, 1) that the C generator of the matmul hashes below computes
    /// to the same floats.
    pub fn ggml_side_values(state: &mut u64, count: usize, scale: f32) -> Vec<f32> {
        (0..count)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                ((*state >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0) * scale
            })
            .collect()
    }

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
}

#[cfg(test)]
mod tests {
    use super::ktest::Rng;
    use super::*;

    fn check_same(src: &[f32]) {
        let mut want = vec![0xAAu8; src.len() / QK_K * BLOCK_BYTES];
        let mut got = vec![0x55u8; want.len()];
        crate::q8_k::quantize(src, &mut want);
        quantize_avx2(src, &mut got);
        for (i, (g, w)) in got
            .chunks(BLOCK_BYTES)
            .zip(want.chunks(BLOCK_BYTES))
            .enumerate()
        {
            assert!(
                g == w,
                "block {i} differs: {:?}",
                &src[i * QK_K..i * QK_K + 8]
            );
        }
    }

    #[test]
    fn same_bytes_as_scalar_on_fixture_activation() {
        let x = crate::testutil::dot_x();
        check_same(&x);
        let mut via_dispatch = vec![0u8; 2 * BLOCK_BYTES];
        crate::dispatch::quantize_q8_k(&x, &mut via_dispatch);
        let mut want = vec![0u8; 2 * BLOCK_BYTES];
        crate::q8_k::quantize(&x, &mut want);
        assert!(via_dispatch == want);
        let rows: Vec<f32> = crate::testutil::source_rows().concat();
        check_same(&rows);
    }

    fn blk(src: &mut [f32], b: usize) -> &mut [f32] {
        &mut src[b * QK_K..(b + 1) * QK_K]
    }

    #[test]
    fn same_bytes_as_scalar_random_and_edges() {
        let mut rng = Rng::new(42);
        let mut src: Vec<f32> = (0..QK_K * 20)
            .map(|i| rng.unit() * 10f32.powi((i / QK_K) as i32 % 9 - 4))
            .collect();
        blk(&mut src, 0).fill(0.0);
        blk(&mut src, 1).fill(-0.0);
        blk(&mut src, 2).fill(1.0);
        blk(&mut src, 3)[17] = -1e9; // largest value negative
        blk(&mut src, 4)[5] = 3.0; // ties in magnitude: the first one wins
        blk(&mut src, 4)[9] = -3.0;
        blk(&mut src, 5)[0] = f32::NAN;
        blk(&mut src, 5)[200] = f32::NAN;
        blk(&mut src, 6)[100] = f32::INFINITY;
        blk(&mut src, 7)[255] = f32::MAX;
        blk(&mut src, 8).fill(f32::NAN);
        blk(&mut src, 9).fill(0.0);
        blk(&mut src, 9)[3] = 1e-40; // subnormal, everything else zero
        for (i, v) in blk(&mut src, 10).iter_mut().enumerate() {
            *v = (i as f32 - 127.5) / 127.0; // many exact half-way roundings
        }
        check_same(&src);
    }
}

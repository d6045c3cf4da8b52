//! The one test kit of the crate: loading the ggml-generated fixtures copied into
//! `tests/data/`, recomputing ggml's test-quantize-fns measures, and whole-matmul hashes
//! (here); checks of the SIMD kernels against those and against the scalar references
//! (`simd`, and `kquant` for the K-quant super-blocks).

// Not every per-format test module needs every helper.
#![allow(dead_code)]

pub mod kquant;
pub mod simd;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn data_path(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(file)
}

fn load_json(file: &str) -> Value {
    let path = data_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// `tests/data/<name>.json`, e.g. `load_type_fixture("Q4_0")`.
pub fn load_type_fixture(name: &str) -> Value {
    load_json(&format!("{name}.json"))
}

/// `tests/data/<name>.dot.json`, e.g. `load_dot_fixture("Q4_0")`.
pub fn load_dot_fixture(name: &str) -> Value {
    load_json(&format!("{name}.dot.json"))
}

/// Decode a lowercase or uppercase hex string.
pub fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let digit = |c: u8| (c as char).to_digit(16).expect("hex digit") as u8;
            digit(p[0]) << 4 | digit(p[1])
        })
        .collect()
}

/// The fixtures print float32 values with 9 significant digits; going through f64 first
/// recovers the exact f32 (a direct f32 parse would too, but this mirrors the README).
pub fn f32_array(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The 12 source rows of 512 values: tensors normal, outliers, edge, 4 rows each, in order.
pub fn source_rows() -> Vec<Vec<f32>> {
    let src = load_json("source.json");
    let mut rows = Vec::with_capacity(12);
    for t in src["tensors"].as_array().expect("tensors") {
        for r in t["values"].as_array().expect("values") {
            rows.push(f32_array(r));
        }
    }
    assert_eq!(rows.len(), 12);
    rows
}

/// The activation vector (512 values) the dot fixtures use.
pub fn dot_x() -> Vec<f32> {
    f32_array(&load_json("source.json")["x"]["values"])
}

/// test-quantize-fns' generate_data: 0.1 + 2*cos(i + offset), computed in f32 like the C code.
pub fn ggml_synthetic(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// ggml's array_rmse: sqrt(sum of squared differences) / n (not the usual sqrt(mean)).
pub fn rmse_ggml(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    (sum.sqrt() as f32) / a.len() as f32
}

/// test-quantize-fns' dot_product reference: f32 products accumulated in f64.
pub fn dot_f64(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| (x * y) as f64).sum::<f64>() as f32
}

/// Lowercase hex sha256 of the values as little-endian f32 bytes (fixture `*_f32le_sha256`).
pub fn f32le_sha256(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub type QuantizeFn = fn(&[f32], &mut [u8]);
pub type DequantizeFn = fn(&[u8], &mut [f32]);
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;
/// A quantizer that may capture (e.g. the public dispatch for one type).
pub type QuantizeDyn<'a> = &'a dyn Fn(&[f32], &mut [u8]);

/// The 12 fixture rows (`rows_hex` of `<name>.json`) as raw block bytes.
pub fn fixture_rows(name: &str) -> Vec<Vec<u8>> {
    let fx = load_type_fixture(name);
    let mut rows = Vec::with_capacity(12);
    for t in fx["tensors"].as_array().expect("tensors") {
        for r in t["rows_hex"].as_array().expect("rows_hex") {
            rows.push(hex(r.as_str().expect("hex string")));
        }
    }
    assert_eq!(rows.len(), 12);
    rows
}

/// Quantizing each source row must give ggml's bytes exactly.
pub fn check_quantize_fixture(name: &str, quantize: QuantizeFn) {
    let want = fixture_rows(name);
    for (i, (src, want)) in source_rows().iter().zip(&want).enumerate() {
        let mut got = vec![0u8; want.len()];
        quantize(src, &mut got);
        if &got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!("{name}: row {i} differs from ggml first at byte {first}");
        }
    }
}

/// Dequantizing ggml's bytes must reproduce ggml's f32 output bit for bit (checked through
/// the fixture's sha256 of each tensor's 4 dequantized rows).
pub fn check_dequantize_fixture(name: &str, dequantize: DequantizeFn) {
    let fx = load_type_fixture(name);
    let rows = fixture_rows(name);
    for (t, tensor) in fx["tensors"].as_array().unwrap().iter().enumerate() {
        let mut out = vec![0f32; 4 * 512];
        for r in 0..4 {
            dequantize(&rows[t * 4 + r], &mut out[r * 512..(r + 1) * 512]);
        }
        // The printed values are rounded, so they only help locate a mismatch.
        let printed = tensor["dequant_ggml"].as_array().unwrap();
        for r in 0..4 {
            let want = f32_array(&printed[r]);
            for (j, (&g, &w)) in out[r * 512..(r + 1) * 512].iter().zip(&want).enumerate() {
                let tol = 1e-6 * w.abs().max(1e-30);
                assert!(
                    (g - w).abs() <= tol,
                    "{name}: tensor {t} row {r} [{j}]: {g} vs {w}"
                );
            }
        }
        let want = tensor["dequant_ggml_f32le_sha256"].as_str().unwrap();
        assert_eq!(f32le_sha256(&out), want, "{name}: tensor {t} not bit-exact");
    }
}

/// Checks `vec_dot` on the 12 weight rows against the dot fixture: bit-exact against ggml's
/// scalar kernel without FMA when `bit_exact`, else within 1e-6 * abs_dot_f64 of it, and always
/// within 1e-6 * abs_dot_f64 of ggml's SIMD result. Also checks that `quantize_x` turns the
/// fixture activation into `xq_ref_hex` exactly.
pub fn check_dot_fixture(
    name: &str,
    weights: &[Vec<u8>],
    vec_dot: VecDotFn,
    quantize_x: QuantizeFn,
    bit_exact: bool,
) {
    let fx = load_dot_fixture(name);
    let n = fx["n"].as_u64().unwrap() as usize;
    let xq = hex(fx["xq_ref_hex"].as_str().unwrap());
    let mut mine = vec![0u8; xq.len()];
    quantize_x(&dot_x(), &mut mine);
    assert!(
        mine == xq,
        "{name}: activation quantization differs from xq_ref_hex"
    );
    let rows = fx["rows"].as_array().unwrap();
    assert_eq!(rows.len(), weights.len());
    for (i, (row, w)) in rows.iter().zip(weights).enumerate() {
        let got = vec_dot(n, w, &xq);
        let generic = row["ggml_generic_nofma_refx"].as_f64().unwrap() as f32;
        let simd = row["ggml_vec_dot"].as_f64().unwrap() as f32;
        let tol = 1e-6 * row["abs_dot_f64"].as_f64().unwrap() as f32;
        if bit_exact {
            assert_eq!(got, generic, "{name} row {i}: not ggml's scalar result");
        } else {
            assert!(
                (got - generic).abs() <= tol,
                "{name} row {i}: {got} vs generic {generic}"
            );
        }
        assert!(
            (got - simd).abs() <= tol,
            "{name} row {i}: {got} vs ggml {simd}"
        );
    }
}

/// ggml's test-quantize-fns for one type on its synthetic data, strict `<` against the
/// thresholds, plus agreement with what this ggml build itself measured (same quantizer, so the
/// quantization error must come out the same to float rounding).
pub fn check_quantize_fns(
    name: &str,
    quantize: QuantizeFn,
    dequantize: DequantizeFn,
    vec_dot: VecDotFn,
    quantize_x: QuantizeFn,
    x_block_bytes_per_32: usize,
) {
    let x_bytes = 4096 / 32 * x_block_bytes_per_32;
    check_quantize_fns_sized(name, quantize, dequantize, vec_dot, quantize_x, x_bytes);
}

/// [`check_quantize_fns`] with the activation row size given in bytes, for activation types
/// whose blocks are not 32 wide (Q8_K: 292 bytes per 256).
pub fn check_quantize_fns_sized(
    name: &str,
    quantize: QuantizeFn,
    dequantize: DequantizeFn,
    vec_dot: VecDotFn,
    quantize_x: QuantizeFn,
    x_bytes: usize,
) {
    // ggml compares its SIMD quantizer with the reference one; this crate has one quantizer,
    // so compare the direct call with the public dispatch instead.
    let ty = crate::GgmlType::from_name(name).unwrap();
    let public = move |x: &[f32], q: &mut [u8]| crate::quantize_row(ty, x, q).unwrap();
    check_quantize_fns_against(
        name,
        (quantize, &public),
        dequantize,
        vec_dot,
        quantize_x,
        x_bytes,
    );
}

/// [`check_quantize_fns_sized`] with the second quantizer of the "reference" measure given:
/// for IQ4_NL, whose row quantizer (measured by ggml) is not the one files are made with.
pub fn check_quantize_fns_against(
    name: &str,
    (quantize, reference_quantize): (QuantizeFn, QuantizeDyn),
    dequantize: DequantizeFn,
    vec_dot: VecDotFn,
    quantize_x: QuantizeFn,
    x_bytes: usize,
) {
    let th = &load_json("thresholds.json")["per_type"][name];
    // Types ggml's test skips carry the limits it names for them and ggml's measures from
    // scripts/quant-goldens/testfns.
    assert!(th["tested_by_ggml"].is_boolean(), "{name}: no thresholds");
    let n = 4096;
    let ty = crate::GgmlType::from_name(name).unwrap();
    let x0 = ggml_synthetic(n, 0.0);
    let x1 = ggml_synthetic(n, 1.0);

    let mut q0 = vec![0u8; ty.row_bytes(n as u64).unwrap() as usize];
    quantize(&x0, &mut q0);
    let mut back = vec![0f32; n];
    dequantize(&q0, &mut back);
    let total = rmse_ggml(&x0, &back);

    let mut q_ref = vec![0u8; q0.len()];
    reference_quantize(&x0, &mut q_ref);
    let mut back_ref = vec![0f32; n];
    crate::dequantize_row(ty, &q_ref, &mut back_ref).unwrap();
    let reference = rmse_ggml(&back, &back_ref);

    let mut q1 = vec![0u8; x_bytes];
    quantize_x(&x1, &mut q1);
    let dot = vec_dot(n, &q0, &q1);
    let dot_err = (dot - dot_f64(&x0, &x1)).abs() / n as f32;

    let limit = |k: &str| th[k].as_f64().unwrap() as f32;
    assert!(
        total < limit("max_total_quantization_error"),
        "{name}: total {total}"
    );
    assert!(
        reference < limit("max_reference_quantization_error"),
        "{name}: ref {reference}"
    );
    assert!(
        dot_err < limit("max_vec_dot_error"),
        "{name}: vec_dot error {dot_err}"
    );

    let measured = &th["measured_this_build"];
    let m_total = measured["total_quantization_error"].as_f64().unwrap() as f32;
    assert!(
        (total - m_total).abs() <= 1e-6 * m_total,
        "{name}: total {total} vs ggml {m_total}"
    );
    // ggml measured with its SIMD kernel (another summation order), so the dots agree only to
    // rounding: compare them on the scale of sum |x0*x1|, as the dot fixtures do.
    let m_dot = measured["vec_dot_error"].as_f64().unwrap() as f32;
    let abs_dot: f32 = x0.iter().zip(&x1).map(|(a, b)| (a * b).abs()).sum();
    let slack = 1e-6 * abs_dot / n as f32;
    assert!(
        (dot_err - m_dot).abs() <= slack,
        "{name}: dot err {dot_err} vs ggml {m_dot}"
    );
}

/// xorshift64 values in [-1, 1) times `scale`, as `scripts/quant-goldens/matmul_hash.c`
/// computes them.
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

/// The FNV-1a hash (over the output bits, token-major) of a whole `m x k` times `k x n`
/// matmul, computed with `kernel(t)` for token `t`, on the data `matmul_hash.c` makes:
/// weight row r from [`ggml_side_values`] scaled by `1 << (r % 3)` and quantized with
/// `quantize`, then token t scaled by `1 << (t % 2)` and quantized to `ty`'s activation type.
pub fn matmul_hash(
    ty: crate::GgmlType,
    quantize: QuantizeFn,
    (k, m, n): (usize, usize, usize),
    kernel: &dyn Fn(usize) -> VecDotFn,
) -> u64 {
    let row = ty.row_bytes(k as u64).unwrap() as usize;
    let xty = ty.vec_dot_type();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut w = vec![0u8; m * row];
    for (r, wr) in w.chunks_exact_mut(row).enumerate() {
        quantize(&ggml_side_values(&mut state, k, (1 << (r % 3)) as f32), wr);
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for t in 0..n {
        let v = ggml_side_values(&mut state, k, (1 << (t % 2)) as f32);
        let mut xq = vec![0u8; xty.row_bytes(k as u64).unwrap() as usize];
        crate::quantize_row(xty, &v, &mut xq).unwrap();
        for wr in w.chunks_exact(row) {
            for b in kernel(t)(k, wr, &xq).to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// `scripts/quant-goldens/vec_dot_hash.c` on this side: weights as it makes them (float
/// types from [`ggml_side_values`], block types as random bytes with random f16 fields), the
/// tokens quantized by [`crate::activation::quantize`] (the CPU backend's `from_float`), and
/// every `(token, row)` dot product with `kernel(token)`. Returns the FNV-1a hashes of the
/// activation bytes and (with a kernel) of the products' bits, token-major.
pub fn vec_dot_hash(
    ty: crate::GgmlType,
    (k, m, n): (usize, usize, usize),
    kernel: Option<&dyn Fn(usize) -> VecDotFn>,
) -> (u64, u64) {
    use crate::GgmlType as T;
    let fields: &[usize] = match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::IQ4_XS => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        T::TQ1_0 => &[52],
        T::TQ2_0 => &[64],
        _ => &[],
    };
    let row = ty.row_bytes(k as u64).unwrap() as usize;
    let xty = ty.vec_dot_type();
    let xrow = xty.row_bytes(k as u64).unwrap() as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut w = vec![0u8; m * row];
    if fields.is_empty() {
        for (r, wr) in w.chunks_exact_mut(row).enumerate() {
            let v = ggml_side_values(&mut state, k, (1 << (r % 3)) as f32);
            crate::quantize_row(ty, &v, wr).unwrap();
        }
    } else {
        let mut b = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            b ^= b << 13;
            b ^= b >> 7;
            b ^= b << 17;
            (b >> 32) as u32
        };
        w.iter_mut().for_each(|x| *x = next() as u8);
        for block in w.chunks_exact_mut(ty.type_size()) {
            for &f in fields {
                let v = (0x2000 + next() % 0x1800) as u16 | ((next() & 1) << 15) as u16;
                block[f..f + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    let mut xq = vec![0u8; n * xrow];
    for (t, xr) in xq.chunks_exact_mut(xrow).enumerate() {
        let v = ggml_side_values(&mut state, k, (1 << (t % 2)) as f32);
        crate::activation::quantize(xty, &v, xr).unwrap();
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    if let Some(f) = kernel {
        for (t, xr) in xq.chunks_exact(xrow).enumerate() {
            let f = f(t);
            for wr in w.chunks_exact(row) {
                for b in f(k, wr, xr).to_bits().to_le_bytes() {
                    h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    (fnv(xq.iter().copied()), h)
}

fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Quantizing `matmul_hash.c`'s weights (`m` rows of `k`) must give ggml's bytes, and
/// dequantizing them ggml's floats: compared through the FNV-1a hashes its `detail` mode
/// prints.
pub fn check_format_hashes(ty: crate::GgmlType, (k, m): (usize, usize), quant: u64, dequant: u64) {
    let row = ty.row_bytes(k as u64).unwrap() as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut w = vec![0u8; m * row];
    for (r, wr) in w.chunks_exact_mut(row).enumerate() {
        crate::quantize_row(
            ty,
            &ggml_side_values(&mut state, k, (1 << (r % 3)) as f32),
            wr,
        )
        .unwrap();
    }
    assert_eq!(
        fnv(w.iter().copied()),
        quant,
        "{ty}: quantized bytes differ from ggml's"
    );
    let mut back = vec![0f32; m * k];
    crate::dequantize_row(ty, &w, &mut back).unwrap();
    assert_eq!(
        fnv(back.iter().flat_map(|v| v.to_le_bytes())),
        dequant,
        "{ty}: dequantized values differ from ggml's"
    );
}

/// `matmul_hash.c`'s importance matrix (`GGML_QW=1`): column `k` weighted
/// `1 + (7919 k mod 97) / 16`, the same for every row.
pub fn column_weights(k: usize) -> Vec<f32> {
    (0..k)
        .map(|c| (1 + (7919 * c) % 97) as f32 / 16.0)
        .collect()
}

/// [`check_format_hashes`] for quantization with an importance matrix
/// (`GGML_QW=1 matmul_hash TYPE K M 1 plain 1 detail`).
pub fn check_weighted_hashes(
    ty: crate::GgmlType,
    (k, m): (usize, usize),
    quant: u64,
    dequant: u64,
) {
    let row = ty.row_bytes(k as u64).unwrap() as usize;
    let qw = column_weights(k);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut w = vec![0u8; m * row];
    for (r, wr) in w.chunks_exact_mut(row).enumerate() {
        let v = ggml_side_values(&mut state, k, (1 << (r % 3)) as f32);
        crate::quantize_row_weighted(ty, &v, &qw, wr).unwrap();
    }
    assert_eq!(
        fnv(w.iter().copied()),
        quant,
        "{ty}: importance-weighted bytes differ from ggml's"
    );
    let mut back = vec![0f32; m * k];
    crate::dequantize_row(ty, &w, &mut back).unwrap();
    assert_eq!(
        fnv(back.iter().flat_map(|v| v.to_le_bytes())),
        dequant,
        "{ty}: dequantized values differ from ggml's"
    );
}

/// [`check_weighted_hashes`] on the two shapes the format tests use, 32 rows of 512 and 8
/// rows of 4096 (`GGML_QW=1 matmul_hash TYPE 512 32 1 plain 1 detail`, `... 4096 8 ...`).
pub fn check_weighted_goldens(ty: crate::GgmlType, goldens: [(u64, u64); 2]) {
    for ((k, m), (quant, dequant)) in [(512, 32), (4096, 8)].into_iter().zip(goldens) {
        check_weighted_hashes(ty, (k, m), quant, dequant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_matches_its_checksums() {
        let src = load_json("source.json");
        let rows = source_rows();
        for (t, tensor) in src["tensors"].as_array().unwrap().iter().enumerate() {
            let flat: Vec<f32> = rows[t * 4..t * 4 + 4].concat();
            assert_eq!(
                f32le_sha256(&flat),
                tensor["sha256_f32le"].as_str().unwrap()
            );
        }
        assert_eq!(
            f32le_sha256(&dot_x()),
            src["x"]["sha256_f32le"].as_str().unwrap()
        );
    }

    #[test]
    fn hex_and_rmse() {
        assert_eq!(hex("00ff7A"), vec![0, 255, 0x7a]);
        // sqrt(3^2 + 4^2) / 2
        assert_eq!(rmse_ggml(&[0.0, 0.0], &[3.0, 4.0]), 2.5);
    }
}

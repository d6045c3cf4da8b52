//! Shared helpers for the kernel tests: loading the ggml-generated fixtures copied into
//! `tests/data/` and recomputing ggml's test-quantize-fns measures.

// Not every per-format test module needs every helper.
#![allow(dead_code)]

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

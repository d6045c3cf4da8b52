//! Shared helpers for the tokenizer integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tokenizer::Tokenizer;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `$TORCHLESS_CACHE` or `~/.cache/torchless`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TORCHLESS_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home).join(".cache/torchless")
}

/// Path of a real model; fails (never skips) when it has not been fetched.
pub fn model(file: &str) -> PathBuf {
    let p = cache_dir().join("models").join(file);
    assert!(
        p.exists(),
        "model {} is missing: run scripts/fetch-models.sh first",
        p.display()
    );
    p
}

pub fn load(path: &Path) -> Tokenizer {
    let f = gguf::GgufFile::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Tokenizer::from_gguf(f.metadata())
        .unwrap_or_else(|e| panic!("tokenizer of {}: {e}", path.display()))
}

//! Helpers shared by the CLI integration tests.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// A real model fetched by scripts/fetch-models.sh; failing (not skipping) keeps CI honest.
pub fn real_model(name: &str) -> PathBuf {
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/torchless")
        });
    let p = cache.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh first",
        p.display()
    );
    p
}

/// A file writer that skips over all-zero writes, leaving holes: the file reads back the
/// same, without the disk traffic (for multi-GB synthetic models in tests).
pub struct Sparse {
    pub f: std::fs::File,
    pub pos: u64,
}

impl std::io::Write for Sparse {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::Seek;
        if buf.iter().all(|&b| b == 0) {
            self.f.seek(std::io::SeekFrom::Current(buf.len() as i64))?;
        } else {
            self.f.write_all(buf)?;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

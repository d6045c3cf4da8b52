//! Helpers shared by the CLI integration tests.

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

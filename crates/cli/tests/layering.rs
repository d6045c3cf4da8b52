//! Front ends (every crate that builds on `engine` or on the `torchless` library: the CLI, the
//! server, the Python package in python/) see `engine` only, plus `hub` for MODEL resolution:
//! none of them may depend on a crate below `engine`. Dev-dependencies (test fixtures written
//! with the GGUF writer) are allowed.

use std::path::Path;

/// The crates below `engine`.
const INTERNAL: &[&str] = &["gguf", "quant", "compute", "tokenizer", "models", "gpu"];

/// Names in the `[dependencies]` and `[target.*.dependencies]` tables of a Cargo.toml.
fn runtime_deps(toml: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]"
                || (l.starts_with("[target.") && l.ends_with(".dependencies]"));
            continue;
        }
        if in_deps && !l.is_empty() && !l.starts_with('#') {
            if let Some(name) = l.split(['=', '.', ' ']).next() {
                deps.push(name.trim().to_string());
            }
        }
    }
    deps
}

#[test]
fn front_ends_depend_on_engine_not_below_it() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = crates.join("../python");
    let mut dirs: Vec<_> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.push(python.clone());
    let mut front_ends = 0;
    let mut saw_python = false;
    for dir in dirs {
        let Ok(toml) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let deps = runtime_deps(&toml);
        if !deps.iter().any(|d| d == "engine" || d == "torchless") {
            continue;
        }
        front_ends += 1;
        saw_python |= dir == python;
        let below: Vec<&String> = deps
            .iter()
            .filter(|d| INTERNAL.contains(&d.as_str()))
            .collect();
        assert!(
            below.is_empty(),
            "{} depends on {below:?}: front ends go through `engine` (engine::inspect for file \
             and tokenizer access)",
            dir.display()
        );
    }
    assert!(
        front_ends >= 3,
        "the CLI, the server and the Python package"
    );
    assert!(
        saw_python,
        "python/Cargo.toml builds on the torchless library"
    );
}

#[test]
fn the_dependency_reader_sees_what_it_must() {
    let toml = "[package]\nname = \"x\"\n[dependencies]\nengine.workspace = true\n\
                models = { path = \"../models\" }\n# gguf\n[target.'cfg(unix)'.dependencies]\n\
                libc = \"0.2\"\n[dev-dependencies]\ngguf.workspace = true\n";
    assert_eq!(runtime_deps(toml), ["engine", "models", "libc"]);
}

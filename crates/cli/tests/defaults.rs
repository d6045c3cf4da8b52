//! Every command that takes a MODEL falls back to the default model (found here in a temporary
//! TORCHLESS_CACHE, linked to the real SmolLM2 file), a bare file name finds a model in the
//! cache, and a directory holding one model stands for it.

mod common;
use common::real_model;
use std::path::Path;
use std::process::{Command, Output};

use hub::mock::TempDir;

/// A home whose torchless folder holds the default model (a link to the fetched file); no
/// hub, no Python, so anything but the local copy would fail.
fn home_with_default() -> TempDir {
    let home = TempDir::new("cli-defaults");
    let models = home.path().join("torchless/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        real_model("smollm2-135m-instruct-q4_1"),
        models.join("smollm2-135m-instruct-q4_1.gguf"),
    )
    .unwrap();
    home
}

fn torchless(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("TORCHLESS_CACHE", home.join("torchless"))
        .env("HF_HUB_OFFLINE", "1")
        .env("TORCHLESS_PYTHON", "/nonexistent/python3")
        .env_remove("HF_HUB_CACHE")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn err(o: Output) -> String {
    assert!(!o.status.success());
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn info_tokenize_perplexity_take_the_default_model() {
    let home = home_with_default();
    let h = home.path();
    let info = ok(torchless(h, &["info", "--json"]));
    assert!(info.contains("\"architecture\": \"llama\""), "{info}");
    let explicit = ok(torchless(
        h,
        &[
            "tokenize",
            "smollm2-135m-instruct-q4_1.gguf",
            "Hello world",
            "--json",
        ],
    ));
    let implicit = ok(torchless(h, &["tokenize", "Hello world", "--json"]));
    assert_eq!(explicit, implicit);
    // One argument that names a model is not taken for the text.
    let e = err(torchless(
        h,
        &["tokenize", "smollm2-135m-instruct-q4_1.gguf"],
    ));
    assert!(e.contains("no TEXT given"), "{e}");
    let e = err(torchless(h, &["tokenize", "Qwen/Qwen3-0.6B-GGUF"]));
    assert!(e.contains("no TEXT given"), "{e}");
    // perplexity FILE: the default model; a short text gets the --ctx that fits.
    let short = h.join("short.txt");
    std::fs::write(&short, "The quick brown fox jumps over the lazy dog.").unwrap();
    let e = err(torchless(h, &["perplexity", short.to_str().unwrap()]));
    assert!(
        e.contains("need at least 512 tokens") && e.contains("use --ctx "),
        "{e}"
    );
}

#[test]
fn readme_chat_example_finds_the_cached_file_by_name() {
    let home = home_with_default();
    let o = torchless(
        home.path(),
        &[
            "chat",
            "--system",
            "You are terse.",
            "smollm2-135m-instruct-q4_1.gguf",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn directory_as_model() {
    let home = TempDir::new("cli-dirs");
    let dir = home.path().join("one");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf"),
        dir.join("llama.gguf"),
    )
    .unwrap();
    let out = ok(torchless(
        home.path(),
        &["info", dir.to_str().unwrap(), "--json"],
    ));
    assert!(out.contains("\"architecture\": \"llama\""), "{out}");
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err(torchless(
        home.path(),
        &["run", empty.to_str().unwrap(), "-p", "hi"],
    ));
    assert!(
        e.contains("is a directory with no .gguf file") && !e.contains("os error"),
        "{e}"
    );
    assert_eq!(e.matches(empty.to_str().unwrap()).count(), 1, "{e}");
}

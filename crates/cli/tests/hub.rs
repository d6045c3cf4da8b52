//! `torchless download` and `torchless models` against the in-process mock hub, with the cache
//! and home in a temporary folder (the environment is set on the child process only).

use std::path::Path;
use std::process::{Command, Output};

use hub::mock::{content, Behaviour, MockFile, MockHub, MockRepo, TempDir};

fn mock() -> MockHub {
    let mut tiny = MockRepo::new(
        "org/tiny-GGUF",
        vec![
            MockFile::small("README.md", b"# tiny\n"),
            MockFile::lfs("tiny-Q4_K_M.gguf", content(40_000, 1)),
            MockFile::lfs("tiny-Q8_0.gguf", content(60_000, 2)),
            MockFile::lfs("tiny-Q2_K-00001-of-00002.gguf", content(3000, 3)),
            MockFile::lfs("tiny-Q2_K-00002-of-00002.gguf", content(2000, 4)),
        ],
    );
    tiny.downloads = 1234;
    tiny.likes = 5;
    let multi = MockRepo::new(
        "org/multi-GGUF",
        vec![
            MockFile::lfs("m-IQ2_XS.gguf", content(10, 5)),
            MockFile::lfs("m-Q3_K_S.gguf", content(10, 6)),
        ],
    );
    let mut popular = MockRepo::new(
        "big/tiny-chat-GGUF",
        vec![MockFile::lfs("c.Q8_0.gguf", content(10, 7))],
    );
    popular.downloads = 99_999;
    MockHub::start(vec![tiny, multi, popular], Behaviour::default())
}

fn torchless(endpoint: &str, home: &Path, args: &[&str], offline: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_torchless"));
    cmd.args(args)
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("TORCHLESS_CACHE", home.join("torchless"))
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HF_HUB_OFFLINE");
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd.output().expect("run torchless")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn models_search_table() {
    let hub = mock();
    let home = TempDir::new("cli-hub");
    let o = torchless(
        hub.url(),
        home.path(),
        &["models", "search", "tiny", "--limit", "5"],
        false,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("REPO")
            && lines[0].contains("DOWNLOADS")
            && lines[0].contains("UPDATED"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("big/tiny-chat-GGUF") && lines[1].contains("99999"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("org/tiny-GGUF")
            && lines[2].contains("1234")
            && lines[2].contains("2024-11-03")
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn download_list_rm() {
    let hub = mock();
    let home = TempDir::new("cli-hub");
    let run = |args: &[&str]| torchless(hub.url(), home.path(), args, false);
    let o = run(&["download", "org/tiny-GGUF", "--quant", "q8_0", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = stdout(&o).trim().to_string();
    assert!(
        path.contains("hf/hub/models--org--tiny-GGUF/snapshots/")
            && path.ends_with("tiny-Q8_0.gguf"),
        "{path}"
    );
    assert!(std::fs::read(&path).unwrap() == content(60_000, 2));
    // Default choice Q4_K_M, listing on stderr; a split model brings all its parts.
    let o = run(&["download", "org/tiny-GGUF"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Q2_K") && stdout(&o).trim().ends_with("tiny-Q4_K_M.gguf"),
        "{}",
        stderr(&o)
    );
    let o = run(&["download", "org/tiny-GGUF:Q2_K", "-q"]);
    let first = stdout(&o).trim().to_string();
    assert!(first.ends_with("tiny-Q2_K-00001-of-00002.gguf"), "{first}");
    assert!(Path::new(&first)
        .with_file_name("tiny-Q2_K-00002-of-00002.gguf")
        .is_file());
    let o = run(&["download", "org/tiny-GGUF", "--file", "README.md", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&["models", "list"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.starts_with("REPO"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("tiny-Q8_0.gguf") && l.contains("Q8_0") && l.contains("58.6 KiB")),
        "{out}"
    );
    assert_eq!(
        out.lines().count(),
        5,
        "4 GGUF files, README left out: {out}"
    );

    let o = run(&["models", "rm", "org/tiny-GGUF/tiny-Q8_0.gguf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!Path::new(&path).exists());
    let o = run(&["models", "rm", "org/tiny-GGUF/tiny-Q8_0.gguf"]);
    assert!(
        !o.status.success() && stderr(&o).contains("not in the cache"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "models",
        "rm",
        "org/tiny-GGUF/tiny-Q2_K-00001-of-00002.gguf",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !Path::new(&first)
            .with_file_name("tiny-Q2_K-00002-of-00002.gguf")
            .exists(),
        "all parts go"
    );
    let o = run(&["models", "rm", "org/tiny-GGUF"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["models", "list"]);
    assert!(
        o.status.success() && stdout(&o).is_empty(),
        "{}",
        stdout(&o)
    );
}

#[test]
fn download_errors() {
    let hub = mock();
    let home = TempDir::new("cli-hub");
    let run = |args: &[&str]| torchless(hub.url(), home.path(), args, false);
    let o = run(&["download", "org/multi-GGUF"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("several GGUF models")
            && err.contains("m-IQ2_XS.gguf")
            && err.contains("Q3_K_S"),
        "{err}"
    );
    let o = run(&["download", "org/tiny-GGUF", "--quant", "Q6_K", "-q"]);
    assert!(
        !o.status.success() && stderr(&o).contains("no Q6_K GGUF"),
        "{}",
        stderr(&o)
    );
    let o = run(&["download", "nobody/nothing", "-q"]);
    assert!(
        !o.status.success() && stderr(&o).contains("`nobody/nothing` not found"),
        "{}",
        stderr(&o)
    );
    let o = run(&["download", "org/tiny-GGUF", "--file", "missing.gguf", "-q"]);
    assert!(
        !o.status.success() && stderr(&o).contains("file `missing.gguf` not found"),
        "{}",
        stderr(&o)
    );
    let o = run(&["download", "org/tiny-GGUF", "--revision", "v2", "-q"]);
    assert!(
        !o.status.success() && stderr(&o).contains("revision `v2` not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn offline_mode() {
    let hub = mock();
    let home = TempDir::new("cli-hub");
    let o = torchless(
        hub.url(),
        home.path(),
        &["download", "org/tiny-GGUF:Q8_0", "-q"],
        false,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = hub.requests().len();
    let off = |args: &[&str]| torchless(hub.url(), home.path(), args, true);
    let o = off(&["download", "org/tiny-GGUF:Q8_0", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().ends_with("tiny-Q8_0.gguf"));
    let o = off(&["download", "org/tiny-GGUF", "--quant", "Q4_K_M", "-q"]);
    assert!(
        !o.status.success() && stderr(&o).contains("offline"),
        "{}",
        stderr(&o)
    );
    let o = off(&["models", "search", "tiny"]);
    assert!(
        !o.status.success() && stderr(&o).contains("offline"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hub.requests().len(), seen, "offline sends nothing");
}

#[test]
fn models_rm_takes_what_models_list_prints() {
    let hub = mock();
    let home = TempDir::new("cli-hub");
    let run = |args: &[&str]| torchless(hub.url(), home.path(), args, false);
    for q in ["Q8_0", "Q4_K_M"] {
        let o = run(&["download", &format!("org/tiny-GGUF:{q}"), "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let models = home.path().join("torchless/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("packaged-q4_1.gguf"), b"GGUF").unwrap();
    std::fs::write(models.join("other-q4_1.gguf"), b"GGUF").unwrap();
    let list = stdout(&run(&["models", "list"]));
    let row = |file: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not listed: {list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // A cached file by its FILE column, another by its PATH column.
    let q8 = row("tiny-Q8_0.gguf");
    let o = run(&["models", "rm", &q8[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q4 = row("tiny-Q4_K_M.gguf");
    let o = run(&["models", "rm", q4.last().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `(local)` rows: by FILE and by PATH.
    let local = row("packaged-q4_1.gguf");
    assert_eq!(local[0], "(local)");
    let o = run(&["models", "rm", &local[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["models", "rm", row("other-q4_1.gguf").last().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["models", "list"]);
    assert!(stdout(&o).is_empty(), "all removed: {}", stdout(&o));
    let o = run(&["models", "rm", "tiny-Q8_0.gguf"]);
    assert!(
        !o.status.success() && stderr(&o).contains("torchless models list"),
        "{}",
        stderr(&o)
    );
}

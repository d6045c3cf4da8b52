//! MODEL arguments that name something already on this machine: a bare file name as
//! `models list` shows it, a directory holding one model; and what an unreachable hub says.

use std::fs;
use std::path::{Path, PathBuf};

use hub::mock::{content, Behaviour, MockFile, MockHub, MockRepo, TempDir};
use hub::{resolve_model_with, Hub, HubConfig, HubError};

fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn touch(path: &Path) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"GGUF").unwrap();
    path.to_path_buf()
}

fn err(r: hub::Result<PathBuf>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bare_file_name_finds_a_downloaded_model() {
    let mock = MockHub::start(
        vec![
            MockRepo::new(
                "org/a-GGUF",
                vec![
                    MockFile::lfs("a-Q8_0.gguf", content(100, 1)),
                    MockFile::lfs("same.gguf", content(100, 2)),
                ],
            ),
            MockRepo::new(
                "org/b-GGUF",
                vec![MockFile::lfs("same.gguf", content(100, 3))],
            ),
        ],
        Behaviour::default(),
    );
    let dir = TempDir::new("names");
    let cfg = HubConfig::isolated(mock.url(), dir.path());
    let local = touch(&cfg.models_dir.join("packaged-q4_1.gguf"));
    let hub = Hub::new(cfg);
    // torchless' own folder, with or without the extension.
    assert_eq!(
        resolve_model_with(&hub, Some("packaged-q4_1.gguf")).unwrap(),
        local
    );
    assert_eq!(
        resolve_model_with(&hub, Some("packaged-q4_1")).unwrap(),
        local
    );
    // Not downloaded yet: the error says where to look, and the hub is not asked.
    let e = err(resolve_model_with(&hub, Some("a-Q8_0.gguf")));
    assert!(
        e.contains("no such file") && e.contains("torchless models list"),
        "{e}"
    );
    assert_eq!(mock.requests().len(), 0);
    let a = resolve_model_with(&hub, Some("org/a-GGUF/a-Q8_0.gguf")).unwrap();
    let n = mock.requests().len();
    assert_eq!(resolve_model_with(&hub, Some("a-Q8_0.gguf")).unwrap(), a);
    assert_eq!(mock.requests().len(), n, "found in the cache, no network");
    // The same name in two repositories: ambiguous, both named.
    resolve_model_with(&hub, Some("org/a-GGUF/same.gguf")).unwrap();
    resolve_model_with(&hub, Some("org/b-GGUF/same.gguf")).unwrap();
    let e = err(resolve_model_with(&hub, Some("same.gguf")));
    assert!(
        e.contains("org/a-GGUF/same.gguf") && e.contains("org/b-GGUF/same.gguf"),
        "{e}"
    );
}

#[test]
fn directory_as_model() {
    let dir = TempDir::new("dirs");
    let hub = Hub::new(HubConfig::isolated(&closed_port(), dir.path()));
    let resolve = |p: &Path| resolve_model_with(&hub, Some(p.to_str().unwrap()));

    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join("README.md"), b"x").unwrap();
    let e = err(resolve(&empty));
    assert!(e.contains("is a directory with no .gguf file"), "{e}");
    assert_eq!(e.matches(empty.to_str().unwrap()).count(), 1, "{e}");

    let one = dir.path().join("one");
    let m = touch(&one.join("m.gguf"));
    assert_eq!(resolve(&one).unwrap(), m);

    let split = dir.path().join("split");
    let first = touch(&split.join("m-00001-of-00002.gguf"));
    touch(&split.join("m-00002-of-00002.gguf"));
    assert_eq!(resolve(&split).unwrap(), first);

    let two = dir.path().join("two");
    touch(&two.join("a.gguf"));
    touch(&two.join("b.gguf"));
    let e = err(resolve(&two));
    assert!(
        e.contains("is a directory holding 2 GGUF files") && e.contains("a.gguf, b.gguf"),
        "{e}"
    );
    // An incomplete split set is not taken for a model.
    let half = dir.path().join("half");
    touch(&half.join("m-00001-of-00003.gguf"));
    touch(&half.join("m-00002-of-00003.gguf"));
    assert!(err(resolve(&half)).contains("holding 2 GGUF files"));
}

#[test]
fn unreachable_hub_says_what_to_do() {
    let dir = TempDir::new("unreachable");
    let mut cfg = HubConfig::isolated(&closed_port(), dir.path());
    cfg.retries = 0;
    touch(&cfg.models_dir.join("packaged-q4_1.gguf"));
    let hub = Hub::new(cfg);
    let e = resolve_model_with(&hub, Some("org/x-GGUF:Q4_0")).unwrap_err();
    assert!(matches!(e, HubError::Network { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("HF_ENDPOINT=")
            && e.contains("HF_HUB_OFFLINE=1")
            && e.contains("cached on this machine (usable as MODEL offline): packaged-q4_1.gguf"),
        "{e}"
    );
    // An unresolvable host name says the same.
    let mut cfg = HubConfig::isolated("http://torchless-no-such-host.invalid", dir.path());
    cfg.retries = 0;
    let e = err(resolve_model_with(&Hub::new(cfg), Some("org/x-GGUF")));
    assert!(e.contains("HF_HUB_OFFLINE=1"), "{e}");
}

//! The client against the in-process mock hub: search, listings, downloads into the HF cache
//! layout, resume, checksum, errors, offline mode, reuse of `huggingface_hub` files, the lock.

use std::fs;
use std::time::Duration;

use hub::mock::{content, Behaviour, MockFile, MockHub, MockRepo, TempDir};
use hub::{Hub, HubConfig, HubError};

const SIZE: usize = 300_000;
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

fn assert_same(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "content differs: got {} bytes, want {}",
        got.len(),
        want.len()
    );
}

fn repos() -> Vec<MockRepo> {
    let mut smol = MockRepo::new(
        "org/tiny-GGUF",
        vec![
            MockFile::small("README.md", b"# tiny\n"),
            MockFile::lfs("tiny-Q4_K_M.gguf", content(SIZE, 1)),
            MockFile::lfs("tiny-Q8_0.gguf", content(SIZE / 2, 2)),
            MockFile::lfs("split/tiny-F16-00001-of-00002.gguf", content(1000, 3)),
            MockFile::lfs("split/tiny-F16-00002-of-00002.gguf", content(500, 4)),
        ],
    );
    smol.downloads = 500;
    smol.likes = 7;
    let mut other = MockRepo::new(
        "someone/other-tiny-GGUF",
        vec![MockFile::lfs("o.Q2_K.gguf", content(10, 5))],
    );
    other.downloads = 9000;
    let mut gated = MockRepo::new(
        "corp/gated-GGUF",
        vec![MockFile::lfs("g-Q4_0.gguf", content(100, 6))],
    );
    gated.gated = true;
    vec![smol, other, gated]
}

fn setup(behaviour: Behaviour) -> (MockHub, TempDir, Hub) {
    let mock = MockHub::start(repos(), behaviour);
    let dir = TempDir::new("hub");
    let hub = Hub::new(HubConfig::isolated(mock.url(), dir.path()));
    (mock, dir, hub)
}

fn repo_file(name: &str) -> MockFile {
    repos()
        .into_iter()
        .flat_map(|r| r.files)
        .find(|f| f.path == name)
        .unwrap()
}

#[test]
fn search_sorted_by_downloads() {
    let (mock, _dir, hub) = setup(Behaviour::default());
    let found = hub.search("tiny", 10).unwrap();
    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["someone/other-tiny-GGUF", "org/tiny-GGUF"]);
    assert_eq!((found[1].downloads, found[1].likes), (500, 7));
    assert_eq!(found[1].updated.as_deref(), Some("2024-11-03"));
    assert_eq!(hub.search("tiny", 1).unwrap().len(), 1);
    let req = &mock.requests()[0];
    assert!(
        req.path.contains("filter=gguf") && req.path.contains("sort=downloads"),
        "{}",
        req.path
    );
}

#[test]
fn list_files_with_quants_splits_and_pages() {
    let (_mock, _dir, hub) = setup(Behaviour {
        page_size: Some(2),
        ..Default::default()
    });
    let files = hub.list_files("org/tiny-GGUF", "main").unwrap();
    assert_eq!(files.len(), 5, "{files:?}");
    let q4 = files.iter().find(|f| f.path == "tiny-Q4_K_M.gguf").unwrap();
    assert_eq!(q4.size, SIZE as u64);
    assert_eq!(
        q4.sha256.as_deref(),
        Some(repo_file("tiny-Q4_K_M.gguf").sha256().as_str())
    );
    let models = hub::gguf_models(&files);
    let names: Vec<(&str, Option<&str>, usize)> = models
        .iter()
        .map(|m| (m.file.as_str(), m.quant.as_deref(), m.parts.len()))
        .collect();
    assert_eq!(
        names,
        [
            ("split/tiny-F16-00001-of-00002.gguf", Some("F16"), 2),
            ("tiny-Q4_K_M.gguf", Some("Q4_K_M"), 1),
            ("tiny-Q8_0.gguf", Some("Q8_0"), 1)
        ]
    );
}

#[test]
fn download_into_hf_layout() {
    let (mock, dir, hub) = setup(Behaviour::default());
    let want = repo_file("tiny-Q4_K_M.gguf");
    let path = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    let repo = MockRepo::new("org/tiny-GGUF", vec![]);
    let root = dir.path().join("hub/models--org--tiny-GGUF");
    assert_eq!(
        path,
        root.join("snapshots")
            .join(&repo.commit)
            .join("tiny-Q4_K_M.gguf")
    );
    assert_same(&fs::read(&path).unwrap(), &want.content);
    assert_eq!(
        fs::read_link(&path).unwrap(),
        std::path::Path::new("../../blobs").join(want.sha256())
    );
    assert_eq!(
        fs::read_to_string(root.join("refs/main")).unwrap(),
        repo.commit
    );
    assert!(!root
        .join("blobs")
        .join(format!("{}.incomplete", want.sha256()))
        .exists());
    // A second call finds the blob and fetches nothing more.
    let cdn_before = mock.count("GET", "/cdn/");
    hub.download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    assert_eq!(mock.count("GET", "/cdn/"), cdn_before);
    // Non-LFS files are served directly, named by their git etag.
    let readme = hub.download("org/tiny-GGUF", "README.md", "main").unwrap();
    assert_same(&fs::read(readme).unwrap(), b"# tiny\n");
    // Files in sub-folders link two levels further up.
    let part = hub
        .download(
            "org/tiny-GGUF",
            "split/tiny-F16-00002-of-00002.gguf",
            "main",
        )
        .unwrap();
    assert!(fs::read_link(&part).unwrap().starts_with("../../../blobs"));
    assert_same(&fs::read(part).unwrap(), &content(500, 4));
    let listed = hub.cache().list().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .any(|c| c.quant.as_deref() == Some("Q4_K_M") && c.refs == ["main"]));
}

#[test]
fn resume_after_cut_connections() {
    let (mock, _dir, hub) = setup(Behaviour {
        cuts: 2,
        cut_after: 70_000,
        ..Default::default()
    });
    let path = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    assert_same(&fs::read(path).unwrap(), &content(SIZE, 1));
    let ranges: Vec<Option<String>> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=70000-".into()),
            Some("bytes=140000-".into())
        ]
    );
}

#[test]
fn resume_a_partial_file_left_by_an_earlier_run() {
    let (mock, dir, hub) = setup(Behaviour::default());
    let want = repo_file("tiny-Q4_K_M.gguf");
    let blobs = dir.path().join("hub/models--org--tiny-GGUF/blobs");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join(format!("{}.incomplete", want.sha256())),
        &want.content[..12345],
    )
    .unwrap();
    let path = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    assert_same(&fs::read(path).unwrap(), &want.content);
    let cdn: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].range.as_deref(), Some("bytes=12345-"));
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let (_mock, _dir, hub) = setup(Behaviour {
        cuts: 1,
        cut_after: 5000,
        ignore_range: true,
        ..Default::default()
    });
    let path = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap();
    assert_same(&fs::read(path).unwrap(), &content(SIZE / 2, 2));
}

#[test]
fn corrupt_content_is_rejected() {
    let (_mock, dir, hub) = setup(Behaviour {
        corrupt: vec!["tiny-Q8_0.gguf".into()],
        ..Default::default()
    });
    let err = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap_err();
    assert!(matches!(err, HubError::Checksum { .. }), "{err}");
    let blobs = dir.path().join("hub/models--org--tiny-GGUF/blobs");
    assert_eq!(
        fs::read_dir(blobs).unwrap().count(),
        0,
        "nothing corrupt is kept"
    );
}

#[test]
fn hub_errors_are_specific() {
    let (mock, _dir, hub) = setup(Behaviour::default());
    let e = hub
        .download("nobody/missing", "x.gguf", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    let e = hub
        .download("org/tiny-GGUF", "nope.gguf", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::EntryNotFound { .. }), "{e}");
    assert!(e.to_string().contains("nope.gguf"));
    let e = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "v9")
        .unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    let e = hub.list_files("org/tiny-GGUF", "v9").unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    let e = hub
        .download("corp/gated-GGUF", "g-Q4_0.gguf", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::Gated { .. }), "{e}");
    assert!(e.to_string().contains("HF_TOKEN"), "{e}");
    let e = hub.download("../evil", "x", "main").unwrap_err();
    assert!(matches!(e, HubError::BadSpec { .. }), "{e}");
    let e = hub
        .download("org/tiny-GGUF", "../../x", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::BadSpec { .. }), "{e}");
    // With the token the gated repo opens, and the token is sent.
    let mut cfg = hub.config().clone();
    cfg.token = Some(MockHub::TOKEN.to_string());
    let authed = Hub::new(cfg);
    authed
        .download("corp/gated-GGUF", "g-Q4_0.gguf", "main")
        .unwrap();
    let bearer = format!("Bearer {}", MockHub::TOKEN);
    let seen = mock.requests();
    assert!(seen
        .iter()
        .any(|r| r.authorization.as_deref() == Some(bearer.as_str())));
    let cdn: Vec<_> = seen
        .iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .collect();
    assert!(
        !cdn.is_empty() && cdn.iter().all(|r| r.authorization.is_none()),
        "no token to the CDN"
    );
}

#[test]
fn unreachable_hub_is_a_clear_error() {
    let dir = TempDir::new("hub");
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = HubConfig::isolated(&format!("http://127.0.0.1:{port}"), dir.path());
    cfg.retries = 1;
    let e = Hub::new(cfg)
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::Network { .. }), "{e}");
    assert!(e.to_string().contains("connection failed"), "{e}");
}

#[test]
fn offline_uses_cache_only() {
    let (mock, dir, hub) = setup(Behaviour::default());
    hub.download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap();
    let before = mock.requests().len();
    let mut cfg = HubConfig::isolated(mock.url(), dir.path());
    cfg.offline = true;
    let offline = Hub::new(cfg);
    let p = offline
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap();
    assert_same(&fs::read(&p).unwrap(), &content(SIZE / 2, 2));
    assert_eq!(
        hub::resolve_model_with(&offline, Some("org/tiny-GGUF:q8_0")).unwrap(),
        p
    );
    assert_eq!(
        hub::resolve_model_with(&offline, Some("org/tiny-GGUF/tiny-Q8_0.gguf")).unwrap(),
        p
    );
    let e = offline
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::OfflineNotCached { .. }), "{e}");
    let e = hub::resolve_model_with(&offline, Some("org/tiny-GGUF:Q4_K_M")).unwrap_err();
    assert!(matches!(e, HubError::OfflineNotCached { .. }), "{e}");
    assert!(matches!(
        offline.search("x", 5),
        Err(HubError::Offline { .. })
    ));
    assert_eq!(mock.requests().len(), before, "offline sends nothing");
}

#[test]
fn reuses_files_placed_by_huggingface_hub() {
    let (mock, dir, hub) = setup(Behaviour::default());
    let f = repo_file("tiny-Q4_K_M.gguf");
    let commit = MockRepo::new("org/tiny-GGUF", vec![]).commit;
    let root = dir.path().join("hub/models--org--tiny-GGUF");
    fs::create_dir_all(root.join("blobs")).unwrap();
    fs::create_dir_all(root.join("refs")).unwrap();
    fs::write(root.join("blobs").join(f.sha256()), &f.content).unwrap();
    fs::write(root.join("refs/main"), &commit).unwrap();
    // Only the blob, no snapshot link: the metadata request finds it and links it.
    let p = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    assert_same(&fs::read(&p).unwrap(), &f.content);
    assert_eq!(mock.count("GET", "/cdn/"), 0);
    // With the snapshot link, resolving by quant or file needs no network at all.
    let n = mock.requests().len();
    assert_eq!(
        hub::resolve_model_with(&hub, Some("org/tiny-GGUF:Q4_K_M")).unwrap(),
        p
    );
    assert_eq!(
        hub::resolve_model_with(&hub, Some("org/tiny-GGUF/tiny-Q4_K_M.gguf")).unwrap(),
        p
    );
    assert_eq!(mock.requests().len(), n);
}

#[test]
fn resolve_picks_quants_and_downloads_split_models() {
    let (_mock, _dir, hub) = setup(Behaviour::default());
    let p = hub::resolve_model_with(&hub, Some("org/tiny-GGUF")).unwrap();
    assert!(p.ends_with("tiny-Q4_K_M.gguf"), "{}", p.display());
    let p = hub::resolve_model_with(&hub, Some("org/tiny-GGUF:f16")).unwrap();
    assert!(p.ends_with("split/tiny-F16-00001-of-00002.gguf"));
    assert!(
        p.with_file_name("tiny-F16-00002-of-00002.gguf").is_file(),
        "all parts side by side"
    );
    let e = hub::resolve_model_with(&hub, Some("org/tiny-GGUF:Q2_K")).unwrap_err();
    assert!(matches!(e, HubError::QuantNotFound { .. }));
    assert!(e.to_string().contains("Q8_0"), "lists what there is: {e}");
    let local = hub::resolve_model_with(&hub, Some(MANIFEST)).unwrap();
    assert_eq!(local, std::path::PathBuf::from(MANIFEST));
}

#[test]
fn lock_serializes_downloads_of_one_blob() {
    let (mock, dir, hub) = setup(Behaviour {
        chunk_delay: Some(Duration::from_millis(2)),
        ..Default::default()
    });
    let sha = repo_file("tiny-Q4_K_M.gguf").sha256();
    let lock = hub
        .cache()
        .lock_blob("org/tiny-GGUF", &sha, || panic!("lock should be free"))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h2 = hub.clone();
    let waiter = std::thread::spawn(move || {
        let r = h2.download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main");
        tx.send(()).unwrap();
        r
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(400)).is_err(),
        "download must wait for the lock"
    );
    assert_eq!(mock.count("GET", "/cdn/"), 0);
    drop(lock);
    let first = waiter.join().unwrap().unwrap();
    // Two downloads at once: one fetches, the other waits and reuses the blob.
    let other = Hub::new(HubConfig::isolated(mock.url(), dir.path()));
    let _ = fs::remove_dir_all(dir.path().join("hub"));
    let a = std::thread::spawn(move || other.download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main"));
    let b = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    let a = a.join().unwrap().unwrap();
    assert_eq!((a.clone(), b), (first.clone(), first));
    assert_same(&fs::read(a).unwrap(), &content(SIZE, 1));
    assert_eq!(mock.count("GET", "/cdn/"), 2, "one CDN fetch per round");
}

#[test]
fn cache_rm_file_and_repo() {
    let (_mock, dir, hub) = setup(Behaviour::default());
    let q8 = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap();
    let q4 = hub
        .download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "main")
        .unwrap();
    let removed = hub
        .cache()
        .remove("org/tiny-GGUF", Some("tiny-Q8_0.gguf"))
        .unwrap();
    assert_eq!(removed.len(), 2, "link and blob: {removed:?}");
    assert!(!q8.exists() && q4.exists());
    assert!(matches!(
        hub.cache().remove("org/tiny-GGUF", Some("tiny-Q8_0.gguf")),
        Err(HubError::NotCached { .. })
    ));
    hub.cache().remove("org/tiny-GGUF", None).unwrap();
    assert!(!dir.path().join("hub/models--org--tiny-GGUF").exists());
    assert!(matches!(
        hub.cache().remove("org/tiny-GGUF", None),
        Err(HubError::NotCached { .. })
    ));
    assert!(hub.cache().list().unwrap().is_empty());
}

#[test]
fn overloaded_hub_is_retried_then_reported() {
    let (_mock, _dir, hub) = setup(Behaviour {
        unavailable: 2,
        ..Default::default()
    });
    let p = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", "main")
        .unwrap();
    assert_same(&fs::read(p).unwrap(), &content(SIZE / 2, 2));
    let (_mock, dir, _) = setup(Behaviour {
        unavailable: 5,
        ..Default::default()
    });
    let mut cfg = HubConfig::isolated(_mock.url(), dir.path());
    cfg.retries = 1;
    let e = Hub::new(cfg)
        .list_files("org/tiny-GGUF", "main")
        .unwrap_err();
    assert!(matches!(e, HubError::Http { status: 503, .. }), "{e}");
}

#[test]
fn revision_by_commit_hash() {
    let (_mock, dir, hub) = setup(Behaviour::default());
    let commit = MockRepo::new("org/tiny-GGUF", vec![]).commit;
    let p = hub
        .download("org/tiny-GGUF", "tiny-Q8_0.gguf", &commit)
        .unwrap();
    assert!(p.to_string_lossy().contains(&commit));
    let refs = dir.path().join("hub/models--org--tiny-GGUF/refs");
    assert!(!refs.exists(), "a commit needs no ref");
    let spec = format!("org/tiny-GGUF@{commit}:Q8_0");
    assert_eq!(hub::resolve_model_with(&hub, Some(&spec)).unwrap(), p);
}

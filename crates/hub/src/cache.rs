//! The Hugging Face cache layout, shared with the Python `huggingface_hub`:
//!
//! ```text
//! <cache>/models--org--name/blobs/<etag>                  file contents, named by etag
//!                          /snapshots/<commit>/<path>     relative symlink to ../../blobs/<etag>
//!                          /refs/<revision>               the commit a branch or tag pointed to
//! <cache>/.locks/models--org--name/<etag>.lock            held while the blob is downloaded
//! ```

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{HubError, Result};
use crate::files::parse_quant;

/// A hub cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A file present in a snapshot of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub repo: String,
    pub commit: String,
    /// Branches or tags (`refs/...`) pointing at this commit.
    pub refs: Vec<String>,
    pub file: String,
    pub quant: Option<String>,
    pub size: u64,
    /// The snapshot path (a symlink into `blobs/`): the path to open.
    pub path: PathBuf,
}

/// An exclusive lock on one blob's download, released on drop.
#[derive(Debug)]
pub struct BlobLock {
    _file: File,
}

pub(crate) fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `org/name` with both parts non-empty and nothing that could escape the cache folder.
pub fn valid_repo_id(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A repository-relative file path that stays inside the snapshot folder.
pub(crate) fn valid_file_path(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('/')
        && !file.contains('\\')
        && file
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn folder_name(repo: &str) -> String {
        format!("models--{}", repo.replace('/', "--"))
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(Self::folder_name(repo))
    }

    pub fn blob_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    pub fn snapshot_path(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.repo_dir(repo)
            .join("snapshots")
            .join(commit)
            .join(file)
    }

    /// The commit `revision` stands for in the cache: itself when it is a commit hash, else what
    /// `refs/<revision>` says.
    pub fn resolve_ref(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.repo_dir(repo).join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    pub(crate) fn write_ref(&self, repo: &str, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.repo_dir(repo).join("refs").join(revision);
        if fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        create_parent(&path)?;
        // Written aside and renamed so a reader never sees half a hash.
        let tmp = unique_tmp(&path);
        fs::write(&tmp, commit).map_err(|e| HubError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| HubError::io(&path, e))
    }

    /// The cached copy of `file` at `revision`, if its snapshot entry leads to an existing file.
    pub fn cached_file(&self, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
        let commit = self.resolve_ref(repo, revision)?;
        let path = self.snapshot_path(repo, &commit, file);
        path.is_file().then_some(path)
    }

    /// Every file of the snapshot `revision` resolves to (relative paths, sorted).
    pub fn snapshot_files(&self, repo: &str, revision: &str) -> Vec<String> {
        let Some(commit) = self.resolve_ref(repo, revision) else {
            return Vec::new();
        };
        let dir = self.repo_dir(repo).join("snapshots").join(commit);
        let mut out = Vec::new();
        walk(&dir, "", &mut out);
        out.sort();
        out
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink (what
    /// `huggingface_hub` makes), replacing whatever was there.
    pub(crate) fn link_snapshot(
        &self,
        repo: &str,
        commit: &str,
        file: &str,
        etag: &str,
    ) -> Result<PathBuf> {
        let link = self.snapshot_path(repo, commit, file);
        create_parent(&link)?;
        let depth = file.split('/').count() - 1;
        let target = PathBuf::from("../".repeat(depth + 2))
            .join("blobs")
            .join(etag);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            return Ok(link);
        }
        // Made aside and renamed over the old entry: two processes linking the same file at
        // once must never see a missing link, nor copy onto a link that leads to the blob.
        let tmp = unique_tmp(&link);
        let _ = fs::remove_file(&tmp);
        if let Err(e) = symlink(&target, &tmp) {
            // Without symlinks (some filesystems) a copy still gives a usable cache.
            let blob = self.blob_path(repo, etag);
            fs::copy(&blob, &tmp).map_err(|_| HubError::io(&link, e))?;
        }
        fs::rename(&tmp, &link).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HubError::io(&link, e)
        })?;
        Ok(link)
    }

    /// Takes the download lock of a blob, waiting for another process holding it. `waiting` is
    /// called once if the lock is busy, to tell the user why nothing happens.
    pub fn lock_blob(&self, repo: &str, etag: &str, waiting: impl FnOnce()) -> Result<BlobLock> {
        let path = self
            .root
            .join(".locks")
            .join(Self::folder_name(repo))
            .join(format!("{etag}.lock"));
        lock_file(&path, waiting)
    }

    /// Every file of every snapshot, sorted by repository and file name.
    pub fn list(&self) -> Result<Vec<CachedFile>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(HubError::io(&self.root, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("models--") else {
                continue;
            };
            let Some((org, model)) = rest.split_once("--") else {
                continue;
            };
            let repo = format!("{org}/{}", model.replace("--", "/"));
            let dir = entry.path();
            let refs = read_refs(&dir.join("refs"));
            let Ok(snapshots) = fs::read_dir(dir.join("snapshots")) else {
                continue;
            };
            for snap in snapshots.flatten() {
                let commit = snap.file_name().to_string_lossy().into_owned();
                let mut files = Vec::new();
                walk(&snap.path(), "", &mut files);
                for file in files {
                    let path = snap.path().join(&file);
                    let Ok(meta) = fs::metadata(&path) else {
                        continue;
                    };
                    out.push(CachedFile {
                        repo: repo.clone(),
                        commit: commit.clone(),
                        refs: refs
                            .iter()
                            .filter(|(_, c)| *c == commit)
                            .map(|(r, _)| r.clone())
                            .collect(),
                        quant: parse_quant(&file).filter(|_| file.ends_with(".gguf")),
                        file,
                        size: meta.len(),
                        path,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.repo, &a.file, &a.commit).cmp(&(&b.repo, &b.file, &b.commit)));
        Ok(out)
    }

    /// Deletes a whole repository (`file` None) or one file from every snapshot, with the blobs
    /// no snapshot uses any more. Returns the paths removed; an unknown repository or file is
    /// an error so a typo is not silently ignored.
    pub fn remove(&self, repo: &str, file: Option<&str>) -> Result<Vec<PathBuf>> {
        let dir = self.repo_dir(repo);
        if !dir.is_dir() {
            return Err(not_cached(repo, None, &self.root));
        }
        let Some(file) = file else {
            fs::remove_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
            let _ = fs::remove_dir_all(self.root.join(".locks").join(Self::folder_name(repo)));
            return Ok(vec![dir]);
        };
        let mut removed = Vec::new();
        let mut blobs = Vec::new();
        for snap in fs::read_dir(dir.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let link = snap.path().join(file);
            if fs::symlink_metadata(&link).is_err() {
                continue;
            }
            if let Ok(target) = fs::read_link(&link) {
                if let Some(name) = target.file_name() {
                    blobs.push(dir.join("blobs").join(name));
                }
            }
            fs::remove_file(&link).map_err(|e| HubError::io(&link, e))?;
            remove_empty_parents(&link, &snap.path());
            removed.push(link);
        }
        if removed.is_empty() {
            return Err(not_cached(repo, Some(file), &self.root));
        }
        let still_used = self.linked_blobs(&dir);
        for blob in blobs {
            if !still_used.contains(&blob) && fs::remove_file(&blob).is_ok() {
                removed.push(blob);
            }
        }
        Ok(removed)
    }

    fn linked_blobs(&self, dir: &Path) -> Vec<PathBuf> {
        let mut used = Vec::new();
        for snap in fs::read_dir(dir.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let mut files = Vec::new();
            walk(&snap.path(), "", &mut files);
            for f in files {
                if let Ok(t) = fs::read_link(snap.path().join(&f)) {
                    if let Some(name) = t.file_name() {
                        used.push(dir.join("blobs").join(name));
                    }
                }
            }
        }
        used
    }
}

fn not_cached(repo: &str, file: Option<&str>, root: &Path) -> HubError {
    let what = match file {
        Some(f) => format!("`{repo}/{f}`"),
        None => format!("`{repo}`"),
    };
    HubError::NotCached {
        what,
        cache: root.to_path_buf(),
    }
}

fn remove_empty_parents(path: &Path, stop: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        if d == stop {
            break;
        }
        dir = d.parent();
    }
}

fn read_refs(dir: &Path) -> Vec<(String, String)> {
    let mut names = Vec::new();
    walk(dir, "", &mut names);
    names
        .into_iter()
        .filter_map(|r| {
            Some((
                r.clone(),
                fs::read_to_string(dir.join(&r)).ok()?.trim().to_string(),
            ))
        })
        .collect()
}

/// Collects the files (and symlinks) under `dir` as `/`-separated relative paths.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            continue; // a link being made by `link_snapshot`
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path(), &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

/// Takes an exclusive lock on `path` (created if needed), waiting while another process holds
/// it; `waiting` is called once if it is busy. Released when the returned value is dropped.
pub fn lock_file(path: &Path, waiting: impl FnOnce()) -> Result<BlobLock> {
    create_parent(path)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| HubError::io(path, e))?;
    if !try_flock(&file, false).map_err(|e| HubError::io(path, e))? {
        waiting();
        try_flock(&file, true).map_err(|e| HubError::io(path, e))?;
    }
    Ok(BlobLock { _file: file })
}

/// A name beside `path` that no other process or thread uses.
pub(crate) fn unique_tmp(path: &Path) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{seq}.tmp", std::process::id()))
}

pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p).map_err(|e| HubError::io(p, e)),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no symlinks",
    ))
}

/// `flock` rather than `File::lock`, which is newer than the workspace's minimum Rust.
#[cfg(unix)]
fn try_flock(file: &File, block: bool) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = if block {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !block => return Ok(false),
            _ => return Err(e),
        }
    }
}

#[cfg(not(unix))]
fn try_flock(_file: &File, _block: bool) -> std::io::Result<bool> {
    Ok(true)
}

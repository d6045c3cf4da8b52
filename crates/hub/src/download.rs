//! Downloading one file into the cache: metadata from the `resolve` endpoint, the content into
//! `blobs/<etag>.incomplete` (resumed with `Range` after a cut), checked against the LFS sha256,
//! then renamed into place and linked from the snapshot. A lock per blob keeps two processes
//! from writing the same `.incomplete` file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::api::{encode, origin, Ctx, Hub};
use crate::cache::{create_parent, valid_file_path};
use crate::error::{HubError, Result};
use crate::files::{human_size, GgufModel};

/// What the hub says about a file before its content is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The commit the revision points to (`X-Repo-Commit`).
    pub commit: String,
    /// The blob name in the cache: the sha256 for LFS files, the git object id otherwise.
    pub etag: String,
    pub size: Option<u64>,
    /// Set for LFS files (`X-Linked-Etag`): the content is checked against it.
    pub sha256: Option<String>,
    /// Where the content is fetched from (the CDN location for LFS files).
    pub url: String,
}

/// Redirects followed before giving up (renamed repositories, then the CDN).
const MAX_REDIRECTS: usize = 5;
/// Total attempts for one file, however much each made progress, so a server that keeps
/// dropping the connection cannot keep us looping.
const MAX_ATTEMPTS: u32 = 100;

impl Hub {
    /// The `resolve` URL of a file.
    pub fn file_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.cfg.endpoint,
            repo,
            encode(revision, false),
            encode(file, true)
        )
    }

    /// Asks the hub for a file's commit, etag, size and download location (a `HEAD` request).
    pub fn file_meta(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta> {
        crate::api::check_repo(repo)?;
        self.online(&format!("look up `{repo}/{file}`"))?;
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: Some(file),
        };
        let mut url = self.file_url(repo, revision, file);
        for _ in 0..MAX_REDIRECTS {
            let resp = self.retrying(|| {
                self.send("HEAD", &url, &[("Accept-Encoding", "identity".into())], ctx)
            })?;
            let header = |name: &str| resp.header(name).map(str::to_string);
            let location = header("location").filter(|_| (300..400).contains(&resp.status()));
            // A redirect within the hub is a renamed repository: ask there. One to another
            // host is the CDN, and this answer already carries the file's metadata.
            if let Some(loc) = location.as_deref().map(|l| self.absolute(l)) {
                if origin(&loc) == origin(&self.cfg.endpoint) {
                    url = loc;
                    continue;
                }
            }
            let bad = |message: &str| HubError::BadResponse {
                url: url.clone(),
                message: message.to_string(),
            };
            let commit = header("x-repo-commit")
                .ok_or_else(|| bad("no X-Repo-Commit header (is HF_ENDPOINT a hub?)"))?;
            let linked = header("x-linked-etag");
            let etag = linked
                .clone()
                .or_else(|| header("etag"))
                .map(|e| normalize_etag(&e))
                .ok_or_else(|| bad("no ETag header"))?;
            if etag.is_empty() || etag.contains(['/', '\\']) || etag.starts_with('.') {
                return Err(bad("unusable ETag"));
            }
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.trim().parse().ok());
            let sha256 = linked
                .is_some()
                .then(|| etag.to_ascii_lowercase())
                .filter(|e| is_sha256(e));
            return Ok(FileMeta {
                commit,
                etag,
                size,
                sha256,
                url: location.map(|l| self.absolute(&l)).unwrap_or(url.clone()),
            });
        }
        Err(HubError::BadResponse {
            url,
            message: "too many redirects".to_string(),
        })
    }

    /// Makes `file` of `repo` at `revision` available in the cache and returns its snapshot
    /// path. A blob already cached (by us or by `huggingface_hub`) is reused; offline, or when
    /// the hub cannot be reached, the cached copy is used if there is one.
    pub fn download(&self, repo: &str, file: &str, revision: &str) -> Result<PathBuf> {
        crate::api::check_repo(repo)?;
        if !valid_file_path(file) {
            return Err(HubError::BadSpec {
                spec: file.to_string(),
                reason: "not a file path inside a repository".to_string(),
            });
        }
        let cached = || self.cache.cached_file(repo, revision, file);
        if self.cfg.offline {
            return cached().ok_or_else(|| HubError::OfflineNotCached {
                what: format!("`{repo}/{file}` (revision `{revision}`)"),
                cache: self.cache.root().to_path_buf(),
            });
        }
        let meta = match self.file_meta(repo, revision, file) {
            Ok(m) => m,
            Err(e) if e.is_transient() || matches!(e, HubError::Unreachable { .. }) => {
                return cached().ok_or(e)
            }
            Err(e) => return Err(e),
        };
        let blob = self.cache.blob_path(repo, &meta.etag);
        if !blob.is_file() {
            let _lock = self.cache.lock_blob(repo, &meta.etag, || {
                self.notice(&format!(
                    "waiting for another process downloading {repo}/{file}"
                ))
            })?;
            // The other process may have finished it while we waited.
            if !blob.is_file() {
                self.fetch_blob(repo, file, &meta, &blob)?;
            }
        }
        let path = self
            .cache
            .link_snapshot(repo, &meta.commit, file, &meta.etag)?;
        self.cache.write_ref(repo, revision, &meta.commit)?;
        Ok(path)
    }

    /// [`download`](Self::download), and for the first part of a split model
    /// (`-00001-of-0000N.gguf`) the other parts too; returns the path of `file`.
    pub fn download_with_parts(&self, repo: &str, file: &str, revision: &str) -> Result<PathBuf> {
        let path = self.download(repo, file, revision)?;
        if let Some((prefix, part)) = crate::files::split_part(file).filter(|(_, p)| p.index == 1) {
            for i in 2..=part.count {
                self.download(
                    repo,
                    &crate::files::split_name(prefix, i, part.count),
                    revision,
                )?;
            }
        }
        Ok(path)
    }

    /// Downloads every part of `model` and returns the path of the first (the one to open).
    pub fn download_model(&self, repo: &str, model: &GgufModel, revision: &str) -> Result<PathBuf> {
        let mut first = None;
        for part in &model.parts {
            let path = self.download(repo, &part.path, revision)?;
            first.get_or_insert(path);
        }
        first.ok_or_else(|| HubError::NoGguf {
            repo: repo.to_string(),
        })
    }

    pub(crate) fn notice(&self, message: &str) {
        if self.cfg.progress {
            eprintln!("torchless: {message}");
        }
    }

    fn fetch_blob(&self, repo: &str, file: &str, meta: &FileMeta, blob: &Path) -> Result<()> {
        let part = blob.with_file_name(format!("{}.incomplete", meta.etag));
        create_parent(&part)?;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| HubError::io(&part, e))?;
        let mut have = out.metadata().map_err(|e| HubError::io(&part, e))?.len();
        if meta.size.is_some_and(|s| have > s) {
            out.set_len(0).map_err(|e| HubError::io(&part, e))?;
            have = 0;
        }
        let mut hasher = Sha256::new();
        if meta.sha256.is_some() && have > 0 {
            hash_prefix(&part, have, &mut hasher)?;
        }
        let size = meta
            .size
            .map(human_size)
            .unwrap_or_else(|| "unknown size".to_string());
        let resumed = if have > 0 {
            format!(", resuming at {}", human_size(have))
        } else {
            String::new()
        };
        self.notice(&format!("downloading {repo}/{file} ({size}{resumed})"));
        let bar = self.progress_bar(meta.size, file);
        bar.set_position(have);
        let mut sink = Sink {
            out: &mut out,
            path: &part,
            hasher: &mut hasher,
            have,
            bar: &bar,
        };
        let ctx = Ctx {
            repo,
            revision: None,
            file: Some(file),
        };
        let (mut failures, mut attempts) = (0, 0);
        while meta.size != Some(sink.have) {
            attempts += 1;
            let before = sink.have;
            match self.fetch_from(&meta.url, meta.size, ctx, &mut sink) {
                Ok(()) => break,
                Err(e)
                    if e.is_transient()
                        && failures < self.cfg.retries
                        && attempts < MAX_ATTEMPTS =>
                {
                    // A cut after progress is not the server failing: start counting afresh.
                    failures = if sink.have > before { 0 } else { failures + 1 };
                    let pause = self.backoff(failures);
                    if self.cfg.progress {
                        bar.suspend(|| {
                            eprintln!("torchless: {e}; retrying in {:.1}s", pause.as_secs_f32())
                        });
                    }
                    std::thread::sleep(pause);
                }
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
        }
        let have = sink.have;
        bar.finish_and_clear();
        out.sync_all().map_err(|e| HubError::io(&part, e))?;
        drop(out);
        if let Some(expected) = meta.size.filter(|&s| s != have) {
            let _ = fs::remove_file(&part);
            return Err(HubError::SizeMismatch {
                repo: repo.to_string(),
                file: file.to_string(),
                expected,
                got: have,
            });
        }
        if let Some(expected) = &meta.sha256 {
            let got = hex(&hasher.finalize());
            if &got != expected {
                let _ = fs::remove_file(&part);
                return Err(HubError::Checksum {
                    repo: repo.to_string(),
                    file: file.to_string(),
                    expected: expected.clone(),
                    got,
                });
            }
        }
        fs::rename(&part, blob).map_err(|e| HubError::io(blob, e))
    }

    /// One GET from `sink.have` on, following redirects; an error leaves `sink` at the bytes
    /// written so far, ready to resume.
    fn fetch_from(&self, url: &str, size: Option<u64>, ctx: Ctx, sink: &mut Sink) -> Result<()> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let mut headers = vec![("Accept-Encoding", "identity".to_string())];
            if sink.have > 0 {
                headers.push(("Range", format!("bytes={}-", sink.have)));
            }
            let resp = match self.send("GET", &url, &headers, ctx) {
                // Nothing left to send from there: the partial file is not what we think.
                Err(HubError::Http { status: 416, .. }) if sink.have > 0 => {
                    sink.restart()?;
                    continue;
                }
                other => other?,
            };
            match resp.status() {
                300..=399 => {
                    let loc = resp.header("location").unwrap_or_default().to_string();
                    if loc.is_empty() {
                        return Err(HubError::BadResponse {
                            url,
                            message: "redirect without Location".to_string(),
                        });
                    }
                    url = self.absolute(&loc);
                    continue;
                }
                206 => {
                    let range = resp.header("content-range").unwrap_or_default();
                    if !range
                        .trim_start()
                        .starts_with(&format!("bytes {}-", sink.have))
                    {
                        return Err(HubError::BadResponse {
                            url,
                            message: format!("asked for bytes {}-, got `{range}`", sink.have),
                        });
                    }
                }
                200 if sink.have > 0 => sink.restart()?, // the server ignored Range
                200 => {}
                s => {
                    return Err(HubError::BadResponse {
                        url,
                        message: format!("status {s}"),
                    })
                }
            }
            return sink.copy(resp.into_reader(), size, &url);
        }
        Err(HubError::BadResponse {
            url,
            message: "too many redirects".to_string(),
        })
    }

    fn progress_bar(&self, size: Option<u64>, file: &str) -> ProgressBar {
        if !self.cfg.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(size, ProgressDrawTarget::stderr());
        let template = if size.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
        } else {
            "{msg} {bytes} {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(file.rsplit('/').next().unwrap_or(file).to_string());
        bar
    }
}

/// The `.incomplete` file being written, with its running hash and length.
struct Sink<'a> {
    out: &'a mut File,
    path: &'a Path,
    hasher: &'a mut Sha256,
    have: u64,
    bar: &'a ProgressBar,
}

impl Sink<'_> {
    fn restart(&mut self) -> Result<()> {
        self.out
            .set_len(0)
            .map_err(|e| HubError::io(self.path, e))?;
        *self.hasher = Sha256::new();
        self.have = 0;
        self.bar.set_position(0);
        Ok(())
    }

    fn copy(&mut self, mut body: impl Read, size: Option<u64>, url: &str) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.cut(url, &e.to_string())),
            };
            if size.is_some_and(|s| self.have + n as u64 > s) {
                return Err(HubError::BadResponse {
                    url: url.to_string(),
                    message: "more bytes than the announced size".to_string(),
                });
            }
            self.out
                .write_all(&buf[..n])
                .map_err(|e| HubError::io(self.path, e))?;
            self.hasher.update(&buf[..n]);
            self.have += n as u64;
            self.bar.set_position(self.have);
        }
        match size {
            Some(s) if self.have < s => Err(self.cut(url, "connection closed early")),
            _ => Ok(()),
        }
    }

    fn cut(&self, url: &str, why: &str) -> HubError {
        // The CDN's signed query string is long and says nothing to a reader.
        let url = url.split('?').next().unwrap_or(url).to_string();
        HubError::Network {
            url,
            message: format!("download cut at {} bytes: {why}", self.have),
            hint: String::new(),
        }
    }
}

fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> Result<()> {
    let file = File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HubError::io(path, e)),
        }
    }
}

/// `W/"abc"` -> `abc`.
fn normalize_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a whole file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let len = fs::metadata(path).map_err(|e| HubError::io(path, e))?.len();
    hash_prefix(path, len, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256("abc"));
    }
}

//! The hub's HTTP API: model search, repository file trees, and the mapping of its error
//! answers (`X-Error-Code`) to [`HubError`]s.

use std::time::Duration;

use serde::Deserialize;

use crate::cache::Cache;
use crate::config::HubConfig;
use crate::error::{HubError, Result};
use crate::files::RepoFile;

/// A client of one hub endpoint and one cache.
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) cfg: HubConfig,
    pub(crate) agent: ureq::Agent,
    pub(crate) cache: Cache,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    pub id: String,
    pub downloads: u64,
    pub likes: u64,
    /// Date of the last change (`YYYY-MM-DD`), when the hub says.
    pub updated: Option<String>,
}

/// What a request is about, to name it in errors.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx<'a> {
    pub repo: &'a str,
    pub revision: Option<&'a str>,
    pub file: Option<&'a str>,
}

/// Most pages a tree listing may take; real repositories need a handful.
const MAX_TREE_PAGES: usize = 1000;

impl Hub {
    pub fn new(cfg: HubConfig) -> Self {
        // Redirects are followed by hand: the first answer carries the commit and etag headers,
        // and the token must not follow a redirect to another host (the CDN).
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(cfg.read_timeout)
            .user_agent(concat!("torchless/", env!("CARGO_PKG_VERSION"), "; hub"))
            .build();
        let cache = Cache::new(cfg.cache_dir.clone());
        Hub { cfg, agent, cache }
    }

    /// A client configured from the environment (see [`HubConfig::from_env`]).
    pub fn from_env() -> Self {
        Self::new(HubConfig::from_env())
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// GGUF models whose name matches `query`, most downloaded first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<ModelSummary>> {
        self.online("search the hub")?;
        let url = format!(
            "{}/api/models?search={}&filter=gguf&sort=downloads&direction=-1&limit={}\
             &expand=downloads&expand=likes&expand=lastModified",
            self.cfg.endpoint,
            encode(query, false),
            limit.max(1)
        );
        let resp = self.retrying(|| self.send("GET", &url, &[], Ctx::default()))?;
        let raw: Vec<RawModel> = read_json(resp, &url)?;
        Ok(raw
            .into_iter()
            .filter_map(|m| {
                Some(ModelSummary {
                    id: m.id.or(m.model_id)?,
                    downloads: m.downloads,
                    likes: m.likes,
                    updated: m
                        .last_modified
                        .or(m.created_at)
                        .map(|d| d.chars().take(10).collect()),
                })
            })
            .collect())
    }

    /// Every file of `repo` at `revision`, following the listing's pages.
    pub fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>> {
        check_repo(repo)?;
        self.online(&format!("list the files of `{repo}`"))?;
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: None,
        };
        let mut url = format!(
            "{}/api/models/{}/tree/{}?recursive=true",
            self.cfg.endpoint,
            repo,
            encode(revision, false)
        );
        let mut files = Vec::new();
        for _ in 0..MAX_TREE_PAGES {
            let resp = self.retrying(|| self.send("GET", &url, &[], ctx))?;
            let next = resp.header("link").and_then(next_link);
            let entries: Vec<RawEntry> = read_json(resp, &url)?;
            files.extend(
                entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| RepoFile {
                        size: e.lfs.as_ref().and_then(|l| l.size).unwrap_or(e.size),
                        sha256: e.lfs.map(|l| l.oid.to_ascii_lowercase()),
                        path: e.path,
                    }),
            );
            match next {
                Some(n) => url = self.absolute(&n),
                None => return Ok(files),
            }
        }
        Err(HubError::BadResponse {
            url,
            message: format!("more than {MAX_TREE_PAGES} pages of files"),
        })
    }

    pub(crate) fn online(&self, what: &str) -> Result<()> {
        if self.cfg.offline {
            Err(HubError::Offline {
                what: what.to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// `location` made absolute against the endpoint.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", origin(&self.cfg.endpoint))
        } else {
            location.to_string()
        }
    }

    /// One request; HTTP error statuses become the matching [`HubError`].
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        ctx: Ctx,
    ) -> Result<ureq::Response> {
        let mut req = self.agent.request(method, url);
        if let Some(token) = &self.cfg.token {
            if origin(url) == origin(&self.cfg.endpoint) {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, resp)) => {
                Err(self.status_error(status, resp, url, ctx))
            }
            Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::Dns => {
                Err(HubError::Unreachable {
                    url: url.to_string(),
                    message: transport_message(&t),
                    hint: self.unreachable_hint(),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(HubError::Network {
                url: url.to_string(),
                message: transport_message(&t),
                hint: match t.kind() {
                    ureq::ErrorKind::ConnectionFailed => self.unreachable_hint(),
                    _ => String::new(),
                },
            }),
        }
    }

    /// What to do when the hub cannot be reached: a mirror, offline mode, and which models are
    /// already on this machine (usable as MODEL without any network).
    pub fn unreachable_hint(&self) -> String {
        let mut cached: Vec<String> = self
            .cache
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.file.ends_with(".gguf") && !f.refs.is_empty())
            .filter(|f| !matches!(crate::files::split_part(&f.file), Some((_, p)) if p.index != 1))
            .map(|f| format!("{}/{}", f.repo, f.file))
            .collect();
        cached.dedup();
        cached.extend(crate::resolve::local_models(&self.cfg.models_dir));
        let have = if cached.is_empty() {
            "nothing is cached on this machine yet".to_string()
        } else {
            format!(
                "cached on this machine (usable as MODEL offline): {}",
                cached.join(", ")
            )
        };
        format!(
            "\n  to use a mirror set HF_ENDPOINT=<mirror URL>; to use only cached models set \
             HF_HUB_OFFLINE=1\n  {have}"
        )
    }

    /// Runs `f` again after transient failures, waiting longer each time.
    pub(crate) fn retrying<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_transient() && attempt < self.cfg.retries => {
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        (self.cfg.retry_delay * 2u32.saturating_pow(attempt.min(16))).min(Duration::from_secs(10))
    }

    fn status_error(&self, status: u16, resp: ureq::Response, url: &str, ctx: Ctx) -> HubError {
        let code = resp.header("x-error-code").unwrap_or("").to_string();
        let mut message = resp.header("x-error-message").unwrap_or("").to_string();
        if message.is_empty() {
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(
                &mut std::io::Read::take(resp.into_reader(), 300),
                &mut body,
            );
            message = body
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
        }
        let repo = ctx.repo.to_string();
        let revision = ctx.revision.unwrap_or("main").to_string();
        match (code.as_str(), status) {
            ("RevisionNotFound", _) => HubError::RevisionNotFound { repo, revision },
            ("EntryNotFound", _) => HubError::EntryNotFound {
                repo,
                revision,
                file: ctx.file.unwrap_or("").to_string(),
            },
            ("GatedRepo", _) => {
                let page = format!("{}/{}", self.cfg.endpoint, ctx.repo);
                let hint = if self.cfg.token.is_some() {
                    format!(
                        "the token's account has no access yet; accept the conditions on {page}"
                    )
                } else {
                    format!("accept its conditions on {page}, then set HF_TOKEN (or write $HF_HOME/token) to a token of that account")
                };
                HubError::Gated { repo, hint }
            }
            ("RepoNotFound", _) | (_, 401) if !ctx.repo.is_empty() => HubError::RepoNotFound {
                repo,
                endpoint: self.cfg.endpoint.clone(),
            },
            (_, 403) if !ctx.repo.is_empty() => HubError::Forbidden { repo },
            (_, 404) if ctx.file.is_some() => HubError::EntryNotFound {
                repo,
                revision,
                file: ctx.file.unwrap_or("").to_string(),
            },
            (_, 404) if !ctx.repo.is_empty() => HubError::RepoNotFound {
                repo,
                endpoint: self.cfg.endpoint.clone(),
            },
            _ => HubError::Http {
                url: url.to_string(),
                status,
                message,
            },
        }
    }
}

pub(crate) fn check_repo(repo: &str) -> Result<()> {
    if crate::cache::valid_repo_id(repo) {
        Ok(())
    } else {
        Err(HubError::BadSpec {
            spec: repo.to_string(),
            reason: "a repository is `owner/name`".to_string(),
        })
    }
}

fn transport_message(t: &ureq::Transport) -> String {
    match t.kind() {
        ureq::ErrorKind::Dns => "cannot resolve the host name (no network?)".to_string(),
        ureq::ErrorKind::ConnectionFailed => {
            format!("connection failed ({})", t.message().unwrap_or("refused"))
        }
        _ => t.to_string(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(resp: ureq::Response, url: &str) -> Result<T> {
    serde_json::from_reader(resp.into_reader()).map_err(|e| HubError::BadResponse {
        url: url.to_string(),
        message: format!("not the expected JSON: {e}"),
    })
}

/// `scheme://host[:port]` of a URL.
pub(crate) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct RawModel {
    id: Option<String>,
    #[serde(rename = "modelId")]
    model_id: Option<String>,
    #[serde(default)]
    downloads: u64,
    #[serde(default)]
    likes: u64,
    #[serde(rename = "lastModified")]
    last_modified: Option<String>,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawLfs {
    oid: String,
    size: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b/c.gguf", true), "a%20b/c.gguf");
        assert_eq!(origin("http://127.0.0.1:80/x/y"), "http://127.0.0.1:80");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        let link = "<https://h/api/models/a/b/tree/main?cursor=x>; rel=\"next\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://h/api/models/a/b/tree/main?cursor=x")
        );
        assert_eq!(next_link("<https://h/p>; rel=\"prev\""), None);
    }
}

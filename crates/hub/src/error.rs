//! Everything that can go wrong talking to the hub or the cache, worded for the person at the
//! terminal: each message says what failed and, where there is one, what to do about it.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub answers 401/404 with `RepoNotFound` both for missing and for private repos, so
    /// the message cannot tell them apart and mentions the token.
    #[error(
        "repository `{repo}` not found on {endpoint} (if it is private, set HF_TOKEN or put a \
         token in $HF_HOME/token)"
    )]
    RepoNotFound { repo: String, endpoint: String },
    #[error("repository `{repo}` is gated: {hint}")]
    Gated { repo: String, hint: String },
    #[error(
        "access to `{repo}` denied (HTTP 403): the token lacks permission for this repository"
    )]
    Forbidden { repo: String },
    #[error("file `{file}` not found in `{repo}` at revision `{revision}`")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("revision `{revision}` not found in `{repo}`")]
    RevisionNotFound { repo: String, revision: String },
    #[error("offline (HF_HUB_OFFLINE is set) and {what} is not in the cache {}", cache.display())]
    OfflineNotCached { what: String, cache: PathBuf },
    #[error("{what} is not in the cache {}", cache.display())]
    NotCached { what: String, cache: PathBuf },
    #[error("offline (HF_HUB_OFFLINE is set): cannot {what}")]
    Offline { what: String },
    #[error(
        "disk full writing {path}: free some space and run again (the partial download is kept \
         and resumes)"
    )]
    DiskFull { path: PathBuf },
    #[error(
        "`{file}` from `{repo}` has sha256 {got} but the hub says {expected}; the corrupt \
         download was deleted"
    )]
    Checksum {
        repo: String,
        file: String,
        expected: String,
        got: String,
    },
    #[error("`{file}` from `{repo}`: got {got} bytes, the hub says {expected}")]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("HTTP {status} from {url}{}", fmt_message(message))]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    /// `hint` (empty, or starting with a newline) says what to do when the hub cannot be
    /// reached at all: a mirror, offline mode, the models already cached.
    #[error("network error with {url}: {message}{hint}")]
    Network {
        url: String,
        message: String,
        hint: String,
    },
    /// Not worth retrying: the name does not resolve.
    #[error("cannot reach {url}: {message}{hint}")]
    Unreachable {
        url: String,
        message: String,
        hint: String,
    },
    #[error("unexpected answer from {url}: {message}")]
    BadResponse { url: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model `{spec}`: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("`{repo}` has no GGUF files")]
    NoGguf { repo: String },
    #[error("`{repo}` has no {quant} GGUF; it has:\n{available}")]
    QuantNotFound {
        repo: String,
        quant: String,
        available: String,
    },
    #[error(
        "`{repo}` has several GGUF models; pick one with --quant / `{repo}:QUANT` or a file \
         name:\n{available}"
    )]
    Ambiguous { repo: String, available: String },
    /// A helper program (python, pip) failed; the message says which and why.
    #[error("{0}")]
    Tool(String),
    #[error("no default model available: {0}")]
    DefaultModel(String),
}

fn fmt_message(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            HubError::DiskFull { path }
        } else {
            HubError::Io { path, source }
        }
    }

    /// Failures worth another try: the connection, a timeout, an overloaded server.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            HubError::Network { .. } => true,
            HubError::Http { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// `ErrorKind::StorageFull` is newer than the workspace's minimum Rust, so match the errno.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT)
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_named() {
        let e = HubError::io("/x/blob", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, HubError::DiskFull { .. }));
        assert!(
            e.to_string().starts_with("disk full writing /x/blob"),
            "{e}"
        );
        // The real thing, where the platform has a full device.
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
            let err = std::io::Write::write_all(&mut f, b"x")
                .and_then(|_| std::io::Write::flush(&mut f))
                .unwrap_err();
            assert!(matches!(
                HubError::io("/dev/full", err),
                HubError::DiskFull { .. }
            ));
        }
        let e = HubError::io(
            "/x",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(e, HubError::Io { .. }));
    }
}

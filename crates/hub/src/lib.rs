//! Hugging Face hub client for torchless: model search, repository listings with GGUF
//! quantizations and split groups, resumable verified downloads into the standard HF cache
//! (shared with the Python `huggingface_hub`), and [`resolve_model`], which turns a MODEL
//! argument into a local path.
//!
//! Environment: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`, `HF_TOKEN` (or `$HF_HOME/token`),
//! `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_PROGRESS_BARS`, and torchless' own `TORCHLESS_CACHE` (model
//! folder, default `~/.cache/torchless`) and `TORCHLESS_PYTHON` (for the PyPI fallback).
//!
//! A command taking a MODEL argument declares it optional and resolves it first:
//!
//! ```no_run
//! # fn main() -> Result<(), hub::HubError> {
//! let arg: Option<String> = None; // clap: `model: Option<String>`
//! let path = hub::resolve_model(arg.as_deref())?; // then open `path` as a GGUF file
//! # Ok(()) }
//! ```
//!
//! MODEL may be a path, `owner/name[@rev][:QUANT]` or `owner/name[@rev]/file.gguf`; none
//! means [`DefaultModel::SMOLLM2`]. Downloads print their progress on stderr.

mod api;
mod cache;
mod config;
mod download;
mod error;
mod files;
#[cfg(feature = "mock")]
pub mod mock;
mod resolve;

pub use api::{Hub, ModelSummary};
pub use cache::{lock_file, valid_repo_id, BlobLock, Cache, CachedFile};
pub use config::{HubConfig, DEFAULT_ENDPOINT};
pub use download::{sha256_file, FileMeta};
pub use error::{HubError, Result};
pub use files::{
    describe_models, gguf_models, human_size, parse_quant, select_model, split_part, GgufModel,
    RepoFile, SplitPart,
};
pub use resolve::{
    parse_spec, resolve_default, resolve_model, resolve_model_with, DefaultModel, ModelSpec,
};

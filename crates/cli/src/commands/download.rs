//! `torchless download`: fetch a GGUF model from the Hugging Face hub into the shared HF cache.

use anyhow::{bail, Result};
use hub::{describe_models, gguf_models, select_model, Hub, HubConfig};

#[derive(clap::Args)]
#[command(
    after_help = "Without --file, the repository's GGUF files are listed and the one with \
    --quant is taken (Q4_K_M when not given and present, or the only model). Files land in the \
    Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub), shared with \
    the Python huggingface_hub; an interrupted download resumes. The path is printed on stdout.\n\n\
    Environment: HF_ENDPOINT, HF_TOKEN (or $HF_HOME/token), HF_HUB_OFFLINE=1."
)]
pub struct Args {
    /// Hub repository `owner/name` (or `owner/name:QUANT`)
    pub repo: String,
    /// File in the repository; the first part of a split model brings all its parts
    #[arg(long, conflicts_with = "quant")]
    pub file: Option<String>,
    /// Quantization to pick among the repository's GGUF files (Q4_K_M, Q8_0, ...)
    #[arg(long)]
    pub quant: Option<String>,
    /// Branch, tag or commit
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// No listing, messages or progress bar on stderr
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut cfg = HubConfig::from_env();
    cfg.progress &= !args.quiet;
    let hub = Hub::new(cfg);
    let (repo, quant) = match args.repo.split_once(':') {
        Some((r, q)) if args.quant.is_none() && args.file.is_none() => {
            (r.to_string(), Some(q.to_string()))
        }
        Some(_) => bail!(
            "give the quantization either as `{}` or with --quant/--file, not both",
            args.repo
        ),
        None => (args.repo.clone(), args.quant.clone()),
    };
    let path = if let Some(file) = &args.file {
        if hub.config().offline {
            hub::resolve_model_with(&hub, Some(&format!("{repo}@{}/{file}", args.revision)))?
        } else {
            hub.download_with_parts(&repo, file, &args.revision)?
        }
    } else if hub.config().offline {
        let spec = match &quant {
            Some(q) => format!("{repo}@{}:{q}", args.revision),
            None => format!("{repo}@{}", args.revision),
        };
        hub::resolve_model_with(&hub, Some(&spec))?
    } else {
        let files = hub.list_files(&repo, &args.revision)?;
        let models = gguf_models(&files);
        if !args.quiet && !models.is_empty() {
            eprintln!("GGUF models in {repo}:\n{}", describe_models(&models));
        }
        let model = select_model(&repo, &models, quant.as_deref())?;
        hub.download_model(&repo, model, &args.revision)?
    };
    super::print_stdout(&format!("{}\n", path.display()))
}

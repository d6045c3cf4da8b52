//! `torchless perplexity`: llama-perplexity's measurement (same windows, same scoring), so the
//! numbers can be compared with llama.cpp's directly.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

#[derive(clap::Args)]
#[command(after_help = "\
The text is tokenized whole (BOS per the model's metadata), cut into windows of --ctx tokens, \
each evaluated from an empty cache with its first token replaced by BOS when the model uses one; \
only the second half of each window is scored. Prints the running perplexity per window on \
stderr and the final estimate with its standard error, like llama-perplexity.")]
pub struct Args {
    /// Model: a .gguf path (for split models the first part), owner/name[:QUANT] or
    /// owner/name/FILE.gguf on the Hugging Face hub (downloaded into its cache)
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// Text file to score (with one argument, the file, scored with the default model)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Window size in tokens (the text needs at least twice as many)
    #[arg(long, default_value_t = 256)]
    pub ctx: usize,
    /// Score only the first N windows (like llama-perplexity's --chunks); all when omitted
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// KV cache element type
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub kv_dtype: String,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print one JSON object on stdout instead of the text summary
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub load: super::args::LoadArgs,
}

pub fn run(args: Args) -> Result<()> {
    if args.ctx < 4 {
        bail!("--ctx: must be at least 4, got {}", args.ctx);
    }
    let kv = super::args::parse_kv_dtype(&args.kv_dtype)?;
    super::args::apply_threads(args.threads)?;
    // `[MODEL] FILE`: one argument is the text file.
    let (model, file) = match (args.model.as_deref(), &args.file) {
        (m, Some(f)) => (m, f.clone()),
        (Some(only), None) if only.ends_with(".gguf") || Path::new(only).is_dir() => {
            bail!("no text FILE given: `torchless perplexity {only} FILE`")
        }
        (Some(only), None) => (None, PathBuf::from(only)),
        (None, None) => bail!("no text FILE given: `torchless perplexity [MODEL] FILE`"),
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let path = super::model_path(model)?;
    let session = engine::SessionOptions {
        max_seq_len: Some(args.ctx),
        kv_dtype: kv,
    };
    let lm = args.load.load_for(&path, session, true, false)?;
    let mut err = std::io::stderr().lock();
    if args.chunks == Some(0) {
        bail!("--chunks: must be at least 1");
    }
    let r = lm.perplexity(&text, args.ctx, kv, args.chunks, |p| {
        if p.chunk == 1 {
            let eta = p.seconds * p.n_chunks as f64;
            let _ = writeln!(
                err,
                "perplexity: {} windows of {} tokens, {:.2} s per window, ETA {:.1} min",
                p.n_chunks,
                args.ctx,
                p.seconds,
                eta / 60.0
            );
        }
        let _ = write!(err, "[{}]{:.4},", p.chunk, p.ppl);
        let _ = err.flush();
    })?;
    let _ = writeln!(err);
    if args.json {
        let obj = json!({
            "ppl": r.ppl,
            "ppl_stderr": r.ppl_stderr,
            "n_ctx": r.n_ctx,
            "n_tokens": r.n_tokens,
            "n_chunks": r.chunk_ppl.len(),
            "n_scored": r.n_scored,
            "chunk_ppl": r.chunk_ppl,
            "seconds": r.seconds,
        });
        super::print_stdout(&format!("{obj}\n"))
    } else {
        super::print_stdout(&format!(
            "Final estimate: PPL = {:.4} +/- {:.5}\n",
            r.ppl, r.ppl_stderr
        ))
    }
}

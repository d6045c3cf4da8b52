//! `torchless imatrix`: an importance matrix for `torchless quantize --imatrix` (and
//! llama-quantize), computed and stored as llama-imatrix does.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
#[command(after_help = "\
The text is tokenized whole (BOS per the model's metadata) and cut into chunks of --ctx-size \
tokens (it needs at least two); each chunk runs from an empty cache with its first token \
replaced by BOS, as llama-imatrix and llama-perplexity do. For every weight matrix of the \
layers the squares of its input activations are summed per column (per expert for MoE \
stacks); the file is llama-imatrix's GGUF (NAME.in_sum2, NAME.counts, NAME.in_sum), which \
`torchless quantize --imatrix` and llama-quantize read. Runs on the CPU.")]
pub struct Args {
    /// Model: a .gguf path, owner/name[:QUANT] or owner/name/FILE.gguf on the Hugging Face hub
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Text file to run the model over (or -f FILE)
    #[arg(value_name = "TEXT_FILE")]
    pub text: Option<PathBuf>,
    /// Text file to run the model over (llama-imatrix's spelling)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "text"
    )]
    pub file: Option<PathBuf>,
    /// Where to write the importance matrix
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUT",
        default_value = "imatrix.gguf"
    )]
    pub output: PathBuf,
    /// Tokens per chunk
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx_size: usize,
    /// Process at most N chunks [default: all the text holds]
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// Skip the first N chunks of the text
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub chunk: usize,
    /// Save the matrix so far every N chunks (0: only at the end)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub output_frequency: usize,
    /// Also collect the output projection (output.weight, or token_embd.weight when tied)
    #[arg(long)]
    pub process_output: bool,
    /// Do not print the perplexity
    #[arg(long)]
    pub no_ppl: bool,
    /// KV cache element type
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub kv_dtype: String,
    /// Worker threads [default: all cores]
    #[arg(long, short = 't', value_name = "N")]
    pub threads: Option<usize>,
    /// No progress on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub load: super::args::LoadArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Some(text_path) = args.text.as_ref().or(args.file.as_ref()) else {
        bail!("no text file given: `torchless imatrix MODEL TEXT_FILE [-o OUT.gguf]`");
    };
    if args.ctx_size < 4 {
        bail!("--ctx-size: must be at least 4, got {}", args.ctx_size);
    }
    if args.chunks == Some(0) {
        bail!("--chunks: must be at least 1");
    }
    let kv = super::args::parse_kv_dtype(&args.kv_dtype)?;
    super::args::apply_threads(args.threads)?;
    let text = std::fs::read_to_string(text_path)
        .with_context(|| format!("cannot read {}", text_path.display()))?;
    if text.trim().is_empty() {
        bail!(
            "{} is empty: there is no text to run the model over",
            text_path.display()
        );
    }
    engine::imatrix::check_writable(&args.output)?;
    let path = super::model_path(Some(&args.model))?;
    let session = engine::SessionOptions {
        max_seq_len: Some(args.ctx_size),
        kv_dtype: kv,
    };
    let lm = args.load.load_for(&path, session, true, args.quiet)?;
    let opts = engine::ImatrixOptions {
        n_ctx: args.ctx_size,
        max_chunks: args.chunks,
        skip_chunks: args.chunk,
        process_output: args.process_output,
        dataset: text_path.display().to_string(),
        kv_dtype: kv,
    };
    let show = !args.quiet && std::io::stderr().is_terminal();
    let start = Instant::now();
    let (m, ppl) = lm.imatrix(&text, &opts, |p, m| {
        if !args.quiet {
            let eta = p.seconds / p.chunk as f64 * (p.n_chunks - p.chunk) as f64;
            let pct = 100 * p.chunk / p.n_chunks;
            let ppl = if args.no_ppl {
                String::new()
            } else {
                format!("  PPL {:.4}", p.ppl)
            };
            let line = format!(
                "imatrix: [{:>4}/{:>4}] {pct:>3}%{ppl}  {:.1} s, ETA {:.1} s",
                p.chunk, p.n_chunks, p.seconds, eta
            );
            if show {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        }
        if args.output_frequency > 0 && p.chunk % args.output_frequency == 0 {
            m.write_gguf(&args.output)?;
        }
        Ok(())
    })?;
    if show {
        eprintln!();
    }
    m.write_gguf(&args.output)?;
    if !args.quiet {
        eprintln!(
            "imatrix: {} chunks of {} tokens, {} matrices -> {} ({:.1} s)",
            ppl.chunk_ppl.len(),
            args.ctx_size,
            m.entries.len(),
            args.output.display(),
            start.elapsed().as_secs_f64()
        );
    }
    if !args.no_ppl {
        super::print_stdout(&format!(
            "Final estimate: PPL = {:.4} +/- {:.5}\n",
            ppl.ppl, ppl.ppl_stderr
        ))?;
    }
    Ok(())
}

//! `torchless quantize`: make a smaller GGUF from a larger one, with llama-quantize's type
//! choices (the same bytes for the same input and options).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use engine::inspect::GgmlType;
use engine::quantization::{self as q, Options};

#[derive(clap::Args)]
#[command(after_help = "\
TYPE is a tensor type or one of llama-quantize's mixes; `torchless quantize --list` shows \
them. The mixes keep the sensitive tensors (attention V, FFN down in some layers, the output \
and embedding) at more bits, exactly as llama-quantize chooses, so the output is the same file \
llama-quantize makes from the same input. Start from an F16, BF16 or F32 file; re-quantizing a \
quantized one needs --allow-requantize and loses quality.

Types that need an importance matrix (IQ1_*, IQ2_*, IQ3_XXS tensors, Q2_K_S) take one with \
--imatrix (llama-imatrix's file, or `torchless imatrix MODEL TEXT_FILE`'s); the error says \
which tensor needs what.

The file is written beside OUT under a temporary name and renamed when complete, so an \
interrupted run leaves nothing under OUT.")]
pub struct Args {
    /// Input model (.gguf; for split models the first part)
    #[arg(value_name = "IN", required_unless_present = "list")]
    pub input: Option<PathBuf>,
    /// Output file
    #[arg(value_name = "OUT", required_unless_present = "list")]
    pub output: Option<PathBuf>,
    /// Target: a mix (Q4_K_M, Q5_K_M, Q3_K_L, IQ4_XS, ...) or a type (Q4_0, Q8_0, F16, ...)
    #[arg(value_name = "TYPE", required_unless_present = "list")]
    pub ty: Option<String>,
    /// List the types and mixes, then exit
    #[arg(long)]
    pub list: bool,
    /// Allow quantizing tensors that are already quantized
    #[arg(long)]
    pub allow_requantize: bool,
    /// Leave output.weight unquantized (as it is in the input)
    #[arg(long)]
    pub leave_output_tensor: bool,
    /// Give every quantized tensor TYPE's default type: no per-tensor mix rules
    #[arg(long)]
    pub pure: bool,
    /// Type of output.weight
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// Type of token_embd.weight
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// PATTERN=TYPE: tensors whose name matches the regular expression get TYPE (repeatable;
    /// the first match wins)
    #[arg(long, value_name = "PATTERN=TYPE")]
    pub tensor_type: Vec<String>,
    /// Importance matrix from llama-imatrix (GGUF or the legacy .dat): the quantizers weight
    /// each column by it, as llama-quantize does; the IQ2/IQ1 types need one
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Use the importance matrix only for tensors whose names contain NAME (repeatable)
    #[arg(
        long,
        value_name = "NAME",
        requires = "imatrix",
        conflicts_with = "exclude_weights"
    )]
    pub include_weights: Vec<String>,
    /// Do not use the importance matrix for tensors whose names contain NAME (repeatable)
    #[arg(long, value_name = "NAME", requires = "imatrix")]
    pub exclude_weights: Vec<String>,
    /// Write one output file per input split, named OUT-00001-of-0000N.gguf (OUT without
    /// .gguf), as llama-quantize does
    #[arg(long)]
    pub keep_split: bool,
    /// KEY=TYPE:VALUE (TYPE int, float, bool or str): set a metadata key in the output
    /// (repeatable), as llama-quantize does (int is written as u32 of its magnitude)
    #[arg(long, value_name = "KEY=TYPE:VALUE")]
    pub override_kv: Vec<String>,
    /// Replace OUT if it exists
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Print the type each tensor would get and the sizes; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Worker threads [default: all cores]
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// No progress on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn tensor_type(flag: &str, name: &str) -> Result<GgmlType> {
    GgmlType::from_name(name).with_context(|| {
        format!("{flag}: unknown tensor type {name:?} (see `torchless quantize --list`)")
    })
}

/// `KEY=TYPE:VALUE` as llama.cpp's `--override-kv` reads it.
fn parse_kv_override(spec: &str) -> Result<(String, engine::inspect::Value)> {
    use engine::inspect::Value;
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--override-kv {spec:?}: {why} (KEY=TYPE:VALUE, TYPE int, float, bool or str)"
        )
    };
    let (key, rest) = spec.split_once('=').ok_or_else(|| bad("no ="))?;
    if key.is_empty() || key.len() >= 128 {
        return Err(bad("the key must be 1 to 127 characters"));
    }
    let (ty, val) = rest.split_once(':').ok_or_else(|| bad("no TYPE:"))?;
    let value = match ty {
        // llama.cpp writes int overrides as u32 of the magnitude.
        "int" => Value::U32(
            val.trim()
                .parse::<i64>()
                .map_err(|_| bad("not an integer"))?
                .unsigned_abs()
                .try_into()
                .map_err(|_| bad("out of u32 range"))?,
        ),
        "float" => Value::F32(val.trim().parse::<f64>().map_err(|_| bad("not a number"))? as f32),
        "bool" => match val {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("bool must be true or false")),
        },
        "str" if val.len() > 127 => return Err(bad("a str value is at most 127 bytes")),
        "str" => Value::String(val.to_string()),
        _ => return Err(bad("unknown TYPE")),
    };
    Ok((key.to_string(), value))
}

/// Prints to stdout; a closed pipe (`| head`) ends the output quietly.
fn print(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn list() -> Result<()> {
    let mut out =
        String::from("mixes and types (name  file type id  default tensor type  what):\n");
    for m in q::MIXES {
        out += &format!(
            "  {:<8} {:>3}  {:<8} {}\n",
            m.name,
            m.ftype,
            m.default.name(),
            m.about
        );
    }
    print(&out)
}

pub fn run(args: Args) -> Result<()> {
    if args.list {
        return list();
    }
    let (Some(input), Some(output), Some(ty)) = (&args.input, &args.output, &args.ty) else {
        bail!("usage: torchless quantize IN.gguf OUT.gguf TYPE");
    };
    let mix = q::mix::find(ty)
        .with_context(|| format!("unknown TYPE {ty:?}: `torchless quantize --list` shows them"))?;
    let mut opts = Options::new(mix);
    opts.allow_requantize = args.allow_requantize;
    opts.keep_output = args.leave_output_tensor;
    opts.pure = args.pure;
    opts.force = args.force;
    opts.keep_split = args.keep_split;
    opts.threads = match args.threads {
        Some(0) => bail!("--threads: must be at least 1"),
        Some(n) if n > engine::MAX_THREADS => {
            eprintln!(
                "warning: --threads {n} is more than {max}; using {max}",
                max = engine::MAX_THREADS
            );
            engine::MAX_THREADS
        }
        Some(n) => n,
        None => 0,
    };
    if let Some(t) = &args.output_tensor_type {
        opts.output_type = Some(tensor_type("--output-tensor-type", t)?);
    }
    if let Some(t) = &args.token_embedding_type {
        opts.token_embedding_type = Some(tensor_type("--token-embedding-type", t)?);
    }
    for spec in &args.tensor_type {
        let (pat, t) = spec
            .rsplit_once('=')
            .with_context(|| format!("--tensor-type {spec:?}: expected PATTERN=TYPE"))?;
        opts.tensor_types
            .push((pat.to_string(), tensor_type("--tensor-type", t)?));
    }
    for spec in &args.override_kv {
        opts.kv_overrides.push(parse_kv_override(spec)?);
    }
    if let Some(path) = &args.imatrix {
        let mut m = q::imatrix::Imatrix::load(path)?;
        m.filter(&args.include_weights, &args.exclude_weights);
        if !m.entries.is_empty() {
            // What llama-quantize records, after the user's overrides: the path as given
            // and the first dataset (both cut to 127 bytes), the entry and chunk counts.
            let cut = |s: &str| {
                let mut n = s.len().min(127);
                while !s.is_char_boundary(n) {
                    n -= 1;
                }
                s[..n].to_string()
            };
            use engine::inspect::Value;
            let kv = &mut opts.kv_overrides;
            kv.push((
                "quantize.imatrix.file".into(),
                Value::String(cut(&path.to_string_lossy())),
            ));
            if let Some(d) = m.datasets.first() {
                kv.push(("quantize.imatrix.dataset".into(), Value::String(cut(d))));
            }
            kv.push((
                "quantize.imatrix.entries_count".into(),
                Value::U32(m.entries.len() as u32),
            ));
            if m.chunk_count > 0 {
                kv.push((
                    "quantize.imatrix.chunks_count".into(),
                    Value::U32(m.chunk_count),
                ));
            }
            opts.imatrix = Some(std::sync::Arc::new(m));
        }
    }
    if args.dry_run {
        let file = engine::inspect::GgufFile::open(input)
            .with_context(|| format!("cannot open {}", input.display()))?;
        let plans = q::plan(&file, &opts)?;
        let mut out = String::new();
        for p in &plans {
            out += &format!(
                "{:<40} {:>8} -> {:<8} {:>10.2} MiB{}\n",
                p.name,
                p.from.name(),
                p.to.name(),
                p.bytes_out as f64 / 1048576.0,
                p.fallback_from
                    .map_or(String::new(), |f| format!("  (rows do not fit {f})"))
            );
        }
        let (a, b): (u64, u64) = plans
            .iter()
            .fold((0, 0), |(a, b), p| (a + p.bytes_in, b + p.bytes_out));
        out += &format!(
            "{:.2} MiB -> {:.2} MiB
",
            a as f64 / 1048576.0,
            b as f64 / 1048576.0
        );
        return print(&out);
    }
    // Ctrl-C stops between tensors, so the partial file is removed rather than left behind.
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
    opts.cancel = Some(cancel);
    let start = Instant::now();
    let show = !args.quiet && std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let summary = q::quantize_file(input, output, &opts, &mut |p| {
        if args.quiet {
            return;
        }
        let pct = 100.0 * p.bytes_done as f64 / p.bytes_total.max(1) as f64;
        let line = format!(
            "[{:>4}/{:>4}] {:>5.1}%  {:<36} {:>6} -> {}",
            p.index + 1,
            p.total,
            pct,
            p.tensor.name,
            p.tensor.from.name(),
            p.tensor.to.name()
        );
        if show {
            // One updating line on a terminal, at most ~10 times a second.
            if last.elapsed().as_millis() >= 100 || p.index + 1 == p.total {
                eprint!("\r\x1b[2K{line}");
                last = Instant::now();
            }
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    })
    .with_context(|| {
        format!(
            "cannot quantize {} to {}",
            input.display(),
            output.display()
        )
    })?;
    if show {
        eprintln!();
    }
    let fallbacks = summary
        .tensors
        .iter()
        .filter(|t| t.fallback_from.is_some())
        .count();
    if fallbacks > 0 && !args.quiet {
        eprintln!(
            "note: {fallbacks} tensor(s) got a smaller-block type because their rows do not fit \
             the chosen one (as llama-quantize does); --dry-run lists them"
        );
    }
    let file = engine::inspect::GgufFile::open(input)?;
    let written = q::output_paths(&file, output, &opts);
    eprintln!(
        "{}: {:.2} MiB -> {:.2} MiB ({:.2} bits per weight), {:.1} s",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        summary.bytes_in as f64 / 1048576.0,
        summary.bytes_out as f64 / 1048576.0,
        summary.bytes_out as f64 * 8.0 / summary.elements.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

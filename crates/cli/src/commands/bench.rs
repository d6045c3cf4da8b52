//! `torchless bench`: prompt-processing and generation throughput measured the way llama-bench
//! does. `pp` runs P token ids as one batch into an empty cache; `tg` runs N single-token
//! forward calls from an empty cache. Each test runs once untimed (warm-up), then R timed
//! repetitions; the table (or `--json`) shows tokens/s mean ± sample stddev. Progress goes to
//! stderr.

use std::time::Instant;

use anyhow::{bail, Result};
use engine::KvDtype;
use serde_json::json;

#[derive(clap::Args)]
#[command(after_help = "\
Token ids are pseudo-random in [0, n_vocab) from a fixed seed (the sequences are the same in \
every run), as llama-bench feeds random ids; logits are computed but not sampled. \
-p 0 or -n 0 skips that test (its value in --json is null).\n\n\
--json-schema replaces pp/tg with a structured-output test: a chat prompt asking for JSON of \
that schema is answered greedily (up to -n tokens) without and with the schema; both rows show \
generated tokens/s, the schema row also the token-mask time per token.")]
pub struct Args {
    /// Model: a .gguf path, owner/name[:QUANT] or owner/name/FILE.gguf on the Hugging Face hub
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    pub model: Option<String>,
    /// Prompt tokens processed in one batch (pp test); 0 = skip
    #[arg(short = 'p', long = "n-prompt", default_value_t = 128)]
    pub n_prompt: usize,
    /// Tokens generated one forward call at a time (tg test); 0 = skip
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub n_gen: usize,
    /// Timed repetitions of each test (after one untimed warm-up)
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub repetitions: usize,
    /// Tokens already in the KV cache when each test starts (llama-bench's -d): the speed at
    /// that depth of a conversation. Filling the cache is not timed
    #[arg(short = 'd', long = "depth", default_value_t = 0)]
    pub depth: usize,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// KV cache element type
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub kv_dtype: String,
    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub load: super::args::LoadArgs,
    /// Measure generation with and without this JSON Schema (a file, or inline JSON)
    #[arg(long, value_name = "FILE_OR_JSON")]
    pub json_schema: Option<String>,
}

/// Tokens/s of each timed repetition, with their mean and sample standard deviation.
struct Measured {
    tps: Vec<f64>,
    mean: f64,
    stddev: f64,
}

impl Measured {
    fn new(tps: Vec<f64>) -> Measured {
        let n = tps.len() as f64;
        let mean = tps.iter().sum::<f64>() / n;
        let stddev = if tps.len() > 1 {
            (tps.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Measured { tps, mean, stddev }
    }

    fn to_json(&self, n_tokens: usize) -> serde_json::Value {
        json!({
            "n_tokens": n_tokens,
            "runs_tps": self.tps,
            "mean_tps": self.mean,
            "stddev_tps": self.stddev,
        })
    }
}

/// Fixed pseudo-random token ids in `[0, n_vocab)` (64-bit LCG, high bits).
fn token_ids(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % n_vocab as u64) as u32
        })
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    if args.repetitions == 0 {
        bail!("-r: must be at least 1");
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        bail!("nothing to measure: -p and -n are both 0");
    }
    let kv_dtype: KvDtype = super::args::parse_kv_dtype(&args.kv_dtype)?;
    let threads = args
        .threads
        .unwrap_or_else(engine::default_threads)
        .min(engine::MAX_THREADS);
    super::args::apply_threads(Some(args.threads.unwrap_or(threads)))?;

    let schema = args
        .json_schema
        .as_deref()
        .map(engine::ConstraintSpec::json_schema_arg)
        .transpose()?;
    let path = super::model_path(args.model.as_deref())?;
    if let Some(schema) = &schema {
        let lm = args
            .load
            .load(&path, engine::SessionOptions::default(), false)?;
        let setup = super::bench_schema::Setup {
            lm: &lm,
            schema,
            n_gen: args.n_gen.max(1),
            reps: args.repetitions,
            session: engine::SessionOptions {
                max_seq_len: Some(1024),
                kv_dtype,
            },
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        return super::bench_schema::run(&setup, &name, args.json);
    }
    let session = engine::SessionOptions {
        max_seq_len: Some(args.depth + args.n_prompt.max(args.n_gen).max(1)),
        kv_dtype,
    };
    let lm = args.load.load(&path, session, false)?;
    let model = lm.model();
    let n_vocab = lm.n_vocab();
    let file = model.file();
    let size_bytes: u64 = file.tensors().iter().map(|t| t.size).sum();
    let n_params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    let model_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let simd = engine::inspect::kernel_level();
    let max_seq_len = args.depth + args.n_prompt.max(args.n_gen);
    let trained = lm.trained_context();
    if max_seq_len > 2 * trained {
        bail!(
            "the test needs {max_seq_len} positions, more than twice the model's trained \
             context of {trained}; lower -d, -p or -n"
        );
    }
    if max_seq_len > trained {
        // As llama-bench: a speed test may run past the trained context (its text there
        // means nothing, its speed does), here up to twice that context, so that a typo in
        // -d cannot start filling millions of positions.
        eprintln!(
            "bench: warning: the test needs {max_seq_len} positions, beyond the model's \
             trained context of {}",
            lm.trained_context()
        );
    }
    let mut source = lm.logits_source(&engine::SessionOptions {
        max_seq_len: Some(max_seq_len),
        kv_dtype,
    })?;
    let mut logits = Vec::new();
    let reps = args.repetitions;
    let depth = args.depth;
    // The cache holds `depth` tokens before each run: filled once, untimed, and cut back to
    // `depth` after each run (filled again where a sliding-window ring cannot go back).
    let fill = token_ids(depth, n_vocab, 3);
    let to_depth =
        |source: &mut Box<dyn engine::LogitsSource>, logits: &mut Vec<f32>| -> Result<()> {
            if depth > 0 && source.truncate(depth) < depth {
                eprintln!("bench: filling the cache with {depth} tokens");
                source.forward_into(&fill, 0, false, logits)?;
            }
            Ok(())
        };

    let pp = if args.n_prompt > 0 {
        let ids = token_ids(args.n_prompt, n_vocab, 1);
        let mut tps = Vec::with_capacity(reps);
        for rep in 0..=reps {
            eprintln!(
                "bench: pp{} {}",
                args.n_prompt,
                if rep == 0 {
                    "warm-up".to_string()
                } else {
                    format!("run {rep}/{reps}")
                }
            );
            to_depth(&mut source, &mut logits)?;
            let t = Instant::now();
            source.forward_into(&ids, depth, false, &mut logits)?;
            let secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                tps.push(args.n_prompt as f64 / secs);
            }
        }
        Some(Measured::new(tps))
    } else {
        None
    };

    let tg = if args.n_gen > 0 {
        let ids = token_ids(args.n_gen, n_vocab, 2);
        let mut tps = Vec::with_capacity(reps);
        for rep in 0..=reps {
            eprintln!(
                "bench: tg{} {}",
                args.n_gen,
                if rep == 0 {
                    "warm-up".to_string()
                } else {
                    format!("run {rep}/{reps}")
                }
            );
            to_depth(&mut source, &mut logits)?;
            let t = Instant::now();
            for (pos, id) in ids.iter().enumerate() {
                let id = std::slice::from_ref(id);
                source.forward_into(id, depth + pos, false, &mut logits)?;
            }
            let secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                tps.push(args.n_gen as f64 / secs);
            }
        }
        Some(Measured::new(tps))
    } else {
        None
    };

    if args.json {
        let obj = json!({
            "model": path.display().to_string(),
            "model_name": model_name,
            "arch": lm.arch(),
            "size_bytes": size_bytes,
            "n_params": n_params,
            "threads": threads,
            "simd": simd,
            "backend": lm.device(),
            "kv_dtype": args.kv_dtype.to_ascii_lowercase(),
            "repetitions": reps,
            "depth": depth,
            "pp_tps": pp.as_ref().map(|m| m.mean),
            "tg_tps": tg.as_ref().map(|m| m.mean),
            "pp": pp.as_ref().map(|m| m.to_json(args.n_prompt)),
            "tg": tg.as_ref().map(|m| m.to_json(args.n_gen)),
        });
        return super::print_stdout(&format!("{obj}\n"));
    }

    let size = format!("{:.2} MiB", size_bytes as f64 / (1024.0 * 1024.0));
    let mut rows = Vec::new();
    // llama-bench's names: pp512 @ d4096.
    let at = if depth > 0 {
        format!(" @ d{depth}")
    } else {
        String::new()
    };
    if let Some(m) = &pp {
        rows.push((format!("pp{}{at}", args.n_prompt), m));
    }
    if let Some(m) = &tg {
        rows.push((format!("tg{}{at}", args.n_gen), m));
    }
    let mut out = format!(
        "simd: {simd}, backend: {}, repetitions: {reps}\n\n| model | size | threads | test | t/s |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
        lm.device()
    );
    for (test, m) in rows {
        out.push_str(&format!(
            "| {model_name} | {size} | {threads} | {test} | {:.2} ± {:.2} |\n",
            m.mean, m.stddev
        ));
    }
    super::print_stdout(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_ids() {
        let m = Measured::new(vec![1.0, 2.0, 3.0]);
        assert_eq!(m.mean, 2.0);
        assert!((m.stddev - 1.0).abs() < 1e-12);
        assert_eq!(Measured::new(vec![5.0]).stddev, 0.0);
        let ids = token_ids(100, 7, 1);
        assert_eq!(ids, token_ids(100, 7, 1));
        assert!(ids.iter().all(|&i| i < 7));
    }
}

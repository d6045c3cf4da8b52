//! Flags shared by the commands that generate (`run`, `chat`): sampling and the runtime
//! (cache size and type, threads). One definition so every command spells them the same.

use anyhow::{bail, Result};
use engine::{random_seed, KvDtype, SamplingParams, SessionOptions};

/// Sampling flags. The chain order follows llama.cpp (see `run --help`).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the K most likely tokens; 0 = off
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub top_k: i64,
    /// Nucleus sampling mass in (0, 1]; 1 = off
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than P x the most likely one; 0 = off
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise repeated tokens (>1 discourages, 1 = off)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// How many recent tokens (prompt included) the penalties consider; 0 = off
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub repeat_last_n: i64,
    /// Subtract X from the logit of every token already in the window
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtract X per occurrence in the window
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Random seed (reproducible output); random when omitted
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// Validated parameters; a missing seed becomes a random one (reported in the stats).
    pub fn params(&self) -> Result<SamplingParams> {
        if self.top_k < 0 {
            bail!("--top-k: must be >= 0 (0 = off), got {}", self.top_k);
        }
        if self.repeat_last_n < 0 {
            bail!(
                "--repeat-last-n: must be >= 0 (0 = off), got {}",
                self.repeat_last_n
            );
        }
        let p = SamplingParams {
            temperature: self.temp,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n as usize,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.unwrap_or_else(random_seed),
        };
        p.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(p)
    }
}

/// Cache and thread flags of a command that runs a model.
#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// KV cache size in tokens [default: min(trained context, 4096)]
    #[arg(long, value_name = "N")]
    pub max_seq_len: Option<usize>,
    /// KV cache element type
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub kv_dtype: String,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl RuntimeArgs {
    /// Checks the flags and applies `--threads`; call before loading the model so typos fail
    /// fast.
    pub fn session_options(&self) -> Result<SessionOptions> {
        let kv_dtype = parse_kv_dtype(&self.kv_dtype)?;
        if self.max_seq_len == Some(0) {
            bail!("--max-seq-len: must be at least 1");
        }
        apply_threads(self.threads)?;
        Ok(SessionOptions {
            max_seq_len: self.max_seq_len,
            kv_dtype,
        })
    }
}

pub fn parse_kv_dtype(s: &str) -> Result<KvDtype> {
    match s.to_ascii_lowercase().as_str() {
        "f16" => Ok(KvDtype::F16),
        "f32" => Ok(KvDtype::F32),
        other => bail!("--kv-dtype: expected f16 or f32, got {other:?}"),
    }
}

/// `--threads N` (None: one per physical core).
pub fn apply_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads: must be at least 1");
        }
        engine::set_threads(n);
    }
    Ok(())
}

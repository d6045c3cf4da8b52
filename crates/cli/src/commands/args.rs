//! Flags shared by the commands that generate (`run`, `chat`): sampling and the runtime
//! (cache size and type, threads). One definition so every command spells them the same.

use anyhow::{bail, Result};
use std::io::IsTerminal;
use std::path::Path;

use engine::{
    random_seed, KvDtype, LoadMode, LoadOptions, LoadedModel, SamplingParams, SessionOptions,
};

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
    /// Add BIAS to a token's logit, as llama.cpp's flag: TOKEN_ID+BIAS or TOKEN_ID-BIAS
    /// (e.g. `15043+1`, `2-100` all but bans token 2); repeatable
    #[arg(short = 'l', long = "logit-bias", value_name = "TOKEN_ID(+/-)BIAS")]
    pub logit_bias: Vec<String>,
}

impl SamplingArgs {
    /// `--logit-bias` values checked against the vocabulary.
    pub fn logit_bias(&self, n_vocab: usize) -> Result<Vec<(u32, f32)>> {
        self.logit_bias
            .iter()
            .map(|spec| {
                let bad = || {
                    anyhow::anyhow!(
                        "--logit-bias {spec:?}: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1"
                    )
                };
                let at = spec[1..].find(['+', '-']).map(|i| i + 1).ok_or_else(bad)?;
                let id: u32 = spec[..at].trim().parse().map_err(|_| bad())?;
                let bias: f32 = spec[at..].trim().parse().map_err(|_| bad())?;
                if !bias.is_finite() {
                    return Err(bad());
                }
                if id as usize >= n_vocab {
                    bail!("--logit-bias {spec:?}: token {id} is not in the vocabulary ({n_vocab} tokens)");
                }
                Ok((id, bias))
            })
            .collect()
    }

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
    #[command(flatten)]
    pub load: LoadArgs,
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
        self.load.mode()?;
        self.load.backend()?;
        Ok(SessionOptions {
            max_seq_len: self.max_seq_len,
            kv_dtype,
        })
    }
}

/// `--load`: how the weights are brought into memory. Shared by every command that runs a
/// model.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// eager: copy the weights into RAM (fastest); lazy: keep them memory-mapped and page
    /// them in layer by layer (RAM stays near KV cache + one layer, even for models larger
    /// than RAM); auto: eager when it fits comfortably in the available memory
    #[arg(long = "load", value_name = "eager|lazy|auto", default_value = "auto")]
    pub mode: String,
    /// Where the model runs: cpu (the same tokens as llama.cpp's CPU build); a GPU through
    /// vulkan, metal or dx12 (gpu: any of them; cuda, rocm and opencl reach NVIDIA/AMD cards
    /// through their Vulkan driver); auto: a hardware GPU that can run the model, else the CPU.
    /// GPU runs (dense, MoE and latent-attention models) keep the KV cache in f16; their
    /// logits differ from the CPU's in the last digits
    /// [default: cpu, or auto with --gpu-layers]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// With a GPU backend, run only the first N layers there (and the token embedding), the
    /// rest and the output on the CPU, for models that do not fit in device memory;
    /// llama.cpp's -ngl / --n-gpu-layers (both accepted). 0: everything on the CPU. Default:
    /// every layer on the GPU
    #[arg(long = "gpu-layers", visible_alias = "n-gpu-layers", value_name = "N")]
    pub gpu_layers: Option<usize>,
}

impl LoadArgs {
    pub fn mode(&self) -> Result<LoadMode> {
        self.mode
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--load: {e}"))
    }

    /// `--backend`; without it the CPU, or `auto` when `--gpu-layers` asks for GPU layers.
    pub fn backend(&self) -> Result<engine::device::Backend> {
        match &self.backend {
            Some(b) => b
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--backend: {e}")),
            None if self.gpu_layers.is_some_and(|n| n > 0) => Ok(engine::device::Backend::Auto),
            None => Ok(engine::device::Backend::Cpu),
        }
    }

    /// Loads `path` in the chosen mode, planning memory for sessions with `session`'s
    /// settings. Says on stderr what auto chose and why (unless `quiet`), warns when an
    /// explicit eager load is not expected to fit, and shows progress while a large model is
    /// copied into RAM on a terminal.
    pub fn load(&self, path: &Path, session: SessionOptions, quiet: bool) -> Result<LoadedModel> {
        self.load_for(path, session, false, quiet)
    }

    /// [`LoadArgs::load`] for a server with `slots` KV caches at once.
    pub fn load_slots(
        &self,
        path: &Path,
        session: SessionOptions,
        slots: usize,
    ) -> Result<LoadedModel> {
        self.load_with(path, session, false, slots, false)
    }

    /// [`LoadArgs::load`] for a model whose every position's logits are wanted (perplexity).
    pub fn load_for(
        &self,
        path: &Path,
        session: SessionOptions,
        all_logits: bool,
        quiet: bool,
    ) -> Result<LoadedModel> {
        self.load_with(path, session, all_logits, 1, quiet)
    }

    fn load_with(
        &self,
        path: &Path,
        session: SessionOptions,
        all_logits: bool,
        slots: usize,
        quiet: bool,
    ) -> Result<LoadedModel> {
        let opts = LoadOptions {
            mode: self.mode()?,
            session,
            all_logits,
            slots,
            backend: self.backend()?,
            gpu_layers: self.gpu_layers,
        };
        let show = !quiet && std::io::stderr().is_terminal();
        let mut last = 0u64;
        let lm = LoadedModel::load_with(path, &opts, |done, total| {
            if show && total >= PROGRESS_MIN_BYTES && (done == total || done - last >= 1 << 28) {
                last = done;
                eprint!(
                    "\rloading weights into memory: {:>3}% of {}",
                    done * 100 / total,
                    engine::memory::fmt_bytes(total)
                );
                if done == total {
                    eprintln!();
                }
            }
        })?;
        let d = lm.load_decision();
        if let Some(w) = &d.warning {
            eprintln!("warning: {w}");
        }
        if !quiet && opts.mode == LoadMode::Auto {
            eprintln!("load: {}", d.reason);
        }
        if !quiet && opts.backend != engine::device::Backend::Cpu {
            eprintln!("backend: {}", lm.device());
        }
        Ok(lm)
    }
}

/// Eager loads smaller than this finish too fast to be worth a progress line.
const PROGRESS_MIN_BYTES: u64 = 1 << 30;

/// Peak resident memory of this process so far (`VmHWM`), when the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
        let n = if n > engine::MAX_THREADS {
            eprintln!(
                "warning: --threads {n} is more than {max}; using {max}",
                max = engine::MAX_THREADS
            );
            engine::MAX_THREADS
        } else {
            n
        };
        engine::set_threads(n);
    }
    Ok(())
}

/// `--chat-template-file FILE`: the template text, read before the model is loaded so a bad
/// path fails fast.
pub fn read_chat_template(path: Option<&Path>) -> Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--chat-template-file {}: {e}", path.display()))
}

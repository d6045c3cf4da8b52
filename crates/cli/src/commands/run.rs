//! `torchless run`: generate a continuation of one prompt. Only the generated text goes to
//! stdout (streamed); statistics go to stderr so output can be piped.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use engine::{GenerateOptions, TokenEvent};
use serde_json::json;

#[derive(clap::Args)]
#[command(after_help = "\
Prompt handling: by default a model with a chat template gets the prompt as one user message \
followed by the assistant turn; --raw feeds the text as is (with BOS if the model wants one); \
--prompt-ids feeds token ids unchanged (no template, no BOS).\n\n\
Generation ends after -n tokens (default 256), at an end-of-generation token, at a --stop \
string or when the context is full; the reason is printed with the stats (and in --json).\n\n\
Sampling follows llama.cpp: penalties -> top-k -> top-p -> min-p -> temperature; --temp 0 is \
greedy (argmax, lowest id on ties). Without --seed a random seed is used and printed with the \
stats, so any run can be replayed.\n\n\
Structured output: --json-schema, --json-object or --grammar (Lark) mask every token the \
schema or grammar does not allow before sampling; generation ends when the output is \
complete. --json is unrelated: it prints the result (ids, text, logprobs) as JSON.")]
pub struct Args {
    /// Model: a .gguf path, owner/name[:QUANT] or owner/name/FILE.gguf on the Hugging Face hub
    /// (downloaded into its cache) [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    pub model: Option<String>,
    /// Prompt text; `-` reads it from stdin
    #[arg(short = 'p', long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Comma-separated token ids fed directly (no chat template, no BOS), e.g. 1,2,3
    #[arg(long, value_name = "IDS")]
    pub prompt_ids: Option<String>,
    /// Tokens to generate; -1 = until end-of-generation or a full context (0 is rejected)
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: super::args::SamplingArgs,
    #[command(flatten)]
    pub runtime: super::args::RuntimeArgs,
    #[command(flatten)]
    pub structured: super::structured::StructuredArgs,
    /// Require the model's chat template (error if it has none)
    #[arg(long, conflicts_with = "raw")]
    pub chat_template: bool,
    /// Feed the prompt as plain text, without the chat template
    #[arg(long)]
    pub raw: bool,
    /// Use the Jinja chat template in FILE instead of the model's (as llama.cpp's flag)
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub chat_template_file: Option<std::path::PathBuf>,
    /// Stop when this text appears (repeatable); it is not printed
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
    /// Print no statistics on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Print one JSON object (ids, text, stop reason, per-step logprobs) instead of streaming
    #[arg(long)]
    pub json: bool,
    /// With --json: how many top candidates to list per step
    #[arg(long, value_name = "K", default_value_t = 5, requires = "json")]
    pub logprobs: usize,
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let ids = s
        .split(',')
        .map(|t| t.trim())
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                bail!(
                    "--prompt-ids: item {} is empty (expected ids like 1,2,3)",
                    i + 1
                );
            }
            Ok(t)
        })
        .map(|t| {
            let t = t?;
            t.parse::<u32>()
                .with_context(|| format!("--prompt-ids: {t:?} is not a token id"))
        })
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        bail!("--prompt-ids: no ids given");
    }
    Ok(ids)
}

fn max_tokens(n: i64) -> Result<Option<usize>> {
    match n {
        -1 => Ok(None),
        n if n >= 1 => Ok(Some(n as usize)),
        n => bail!("-n: must be at least 1, or -1 for no limit; got {n}"),
    }
}

fn read_prompt(p: &str) -> Result<String> {
    if p == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the prompt from stdin")?;
        return Ok(s);
    }
    Ok(p.to_string())
}

pub fn run(args: Args) -> Result<()> {
    // Everything that can be checked without the model is, so typos fail fast.
    let sampling = args.sampling.params()?;
    let max_tokens = max_tokens(args.n_predict)?;
    let session_opts = args.runtime.session_options()?;
    let structured = args.structured.spec()?;
    let prompt_text = match (&args.prompt, &args.prompt_ids) {
        (Some(p), None) => {
            let text = read_prompt(p)?;
            if text.is_empty() {
                bail!("the prompt is empty");
            }
            Some(text)
        }
        (None, Some(_)) => None,
        _ => bail!("give a prompt with -p TEXT (or -p - for stdin) or --prompt-ids"),
    };
    let given_ids = args.prompt_ids.as_deref().map(parse_ids).transpose()?;
    let template = super::args::read_chat_template(args.chat_template_file.as_deref())?;
    let path = super::model_path(args.model.as_deref())?;
    let mut lm = args.runtime.load.load(&path, session_opts, args.quiet)?;
    if let Some(t) = template {
        lm.set_chat_template(t)?;
    }
    let prompt_ids = match (&prompt_text, &args.prompt_ids) {
        (Some(text), _) => {
            let rendered = if args.raw {
                None
            } else {
                let r = lm.chat_prompt(text)?;
                if r.is_none() && args.chat_template {
                    bail!("--chat-template: the model has no chat template (use --raw)");
                }
                r
            };
            let text = rendered.as_deref().unwrap_or(text);
            // Like llama.cpp: BOS per metadata, control-token text recognised.
            lm.tokenize(text, true, true)?
        }
        (None, Some(_)) => given_ids.expect("parsed above"),
        (None, None) => unreachable!("checked above"),
    };
    if prompt_ids.is_empty() {
        bail!("the prompt produced no tokens");
    }

    let mut session = lm.new_session(&session_opts)?;
    let opts = GenerateOptions {
        max_tokens,
        sampling,
        stop: args.stop.clone(),
        logprobs: args.json.then_some(args.logprobs),
        constraint: super::structured::compile(&lm, structured.as_ref())?,
        logit_bias: args.sampling.logit_bias(lm.n_vocab())?,
    };

    let mut events: Vec<TokenEvent> = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut pipe_closed = false;
    let mut last_byte = None;
    let stats = session.generate_with(&prompt_ids, &opts, |ev| {
        if args.json {
            events.push(ev.clone());
        } else if !pipe_closed && !ev.text.is_empty() {
            // A closed pipe (`| head`) ends output quietly; generation finishes regardless.
            if out
                .write_all(ev.text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                pipe_closed = true;
            }
            last_byte = ev.text.bytes().last();
        }
    })?;
    // On a terminal the shell prompt (or the stats line) starts on a line of its own; piped
    // output stays exactly the generated text.
    if needs_final_newline(!args.json && out.is_terminal(), last_byte) && !pipe_closed {
        let _ = out.write_all(b"\n").and_then(|_| out.flush());
    }
    drop(out);
    let greedy = sampling_greedy(args.sampling.temp);

    if args.json {
        let tok = lm.tokenizer();
        let piece = |id: u32| {
            String::from_utf8_lossy(&tok.token_to_piece(id, true).unwrap_or_default()).into_owned()
        };
        let text: String = events.iter().map(|e| e.text.as_str()).collect();
        let steps: Vec<_> = events
            .iter()
            .map(|e| {
                let top: Vec<_> = e
                    .top
                    .iter()
                    .map(|t| json!({"id": t.id, "text": piece(t.id), "logprob": t.logprob}))
                    .collect();
                json!({"id": e.id, "logprob": e.logprob, "top": top})
            })
            .collect();
        let obj = json!({
            "prompt_ids": prompt_ids,
            "generated_ids": events.iter().map(|e| e.id).collect::<Vec<_>>(),
            "text": text,
            "stop": stats.stop.as_str(),
            "steps": steps,
            "seed": (!greedy).then_some(stats.seed),
            "timings": {
                "prompt_tokens": stats.prompt_tokens,
                "prompt_ms": stats.prompt_time.as_secs_f64() * 1e3,
                "prompt_tokens_per_s": stats.prompt_tps(),
                "generated_tokens": stats.generated_tokens,
                "gen_ms": stats.gen_time.as_secs_f64() * 1e3,
                "gen_tokens_per_s": stats.gen_tps(),
            },
            "load": lm.load_decision().mode.as_str(),
            "peak_rss_bytes": super::args::peak_rss_bytes(),
        });
        super::print_stdout(&format!("{obj}\n"))?;
    }

    if !args.quiet {
        // The seed only matters (and is only printed) when sampling is random.
        let seed = if greedy {
            String::new()
        } else {
            format!(" | seed: {}", stats.seed)
        };
        eprintln!(
            "prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | stop: {}{seed}",
            stats.prompt_tokens,
            stats.prompt_tps(),
            stats.generated_tokens,
            stats.gen_tps(),
            stats.stop,
        );
    }
    Ok(())
}

/// `--temp 0` (or below) picks the most likely token: no randomness, no seed to report.
fn sampling_greedy(temp: f32) -> bool {
    temp <= 0.0
}

/// Whether streamed output needs a closing newline: only on a terminal, after text that did
/// not end a line.
fn needs_final_newline(terminal: bool, last_byte: Option<u8>) -> bool {
    terminal && last_byte.is_some_and(|b| b != b'\n')
}

#[cfg(test)]
mod tests {
    use super::needs_final_newline;

    #[test]
    fn final_newline_only_on_a_terminal_after_an_open_line() {
        assert!(needs_final_newline(true, Some(b'.')));
        assert!(!needs_final_newline(true, Some(b'\n')));
        assert!(!needs_final_newline(true, None));
        assert!(!needs_final_newline(false, Some(b'.')));
    }
}

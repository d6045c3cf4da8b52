//! `torchless`: run LLMs from GGUF files on the CPU.
//!
//! Each subcommand lives in its own file under `commands/`; adding one takes a variant in
//! [`Command`] and an arm in [`main`]'s match.

mod commands;

/// Counts what a chat template holds while it renders and stops a runaway one with a clear
/// message (see `engine::chat_guard`); otherwise the system allocator.
#[global_allocator]
static ALLOC: engine::chat_guard::RenderAlloc = engine::chat_guard::RenderAlloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "torchless",
    version,
    about = "Run large language models from GGUF files on the CPU",
    long_about = "Run large language models from GGUF files on the CPU.\n\n\
        torchless reads llama.cpp's GGUF model files (single or split) and aims to produce the \
        same tokens as llama.cpp for the same model, prompt and sampling settings.\n\n\
        `torchless --chat [OPTIONS] [MODEL]` is another spelling of `torchless chat`.\n\n\
        Run `torchless <COMMAND> --help` for the options of each command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF model file holds: architecture, size, hyperparameters, tokenizer, tensors
    Info(commands::info::Args),
    /// Generate text from a prompt (streams to stdout; statistics on stderr)
    Run(commands::run::Args),
    /// Chat with a model: multi-turn, KV cache reused across turns, reasoning traces hidden or shown
    Chat(commands::chat::Args),
    /// Measure perplexity on a text file the way llama-perplexity does
    Perplexity(commands::perplexity::Args),
    /// Show the token ids of a text (--json: one JSON array), as llama.cpp tokenizes it
    Tokenize(commands::tokenize::Args),
    /// Download a GGUF model from the Hugging Face hub into the HF cache (prints its path)
    Download(commands::download::Args),
    /// Search the hub for GGUF models; list or remove downloaded ones
    Models(commands::models::Args),
    /// Measure prompt-processing and generation speed (tokens/s) the way llama-bench does
    Bench(commands::bench::Args),
    /// Serve the model over HTTP with OpenAI's API (chat/completions, streaming) and a chat page
    Serve(commands::serve::Args),
    /// Make a smaller GGUF (Q4_K_M, Q8_0, IQ4_XS, ...) with llama-quantize's per-tensor choices
    Quantize(commands::quantize::Args),
    /// Compute an importance matrix from a text file for quantizing (llama-imatrix's GGUF)
    Imatrix(commands::imatrix::Args),
}

fn main() -> ExitCode {
    engine::chat_guard::set_hint(
        "use --chat-template-file FILE for another template, or run --raw",
    );
    let cli = Cli::parse_from(ngl_spelling(chat_spelling(std::env::args_os().collect())));
    let result = match cli.command {
        Command::Info(args) => commands::info::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Perplexity(args) => commands::perplexity::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Download(args) => commands::download::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Imatrix(args) => commands::imatrix::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `torchless --chat [OPTIONS] MODEL` is the spelling the torchless-rs document shows; it means
/// `torchless chat [OPTIONS] MODEL`. Only a `--chat` before any subcommand or value counts.
fn chat_spelling(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let flag = args
        .iter()
        .enumerate()
        .skip(1)
        .take_while(|(_, a)| a.to_str().is_some_and(|a| a.starts_with('-')))
        .find(|(_, a)| *a == "--chat")
        .map(|(i, _)| i);
    if let Some(i) = flag {
        args.remove(i);
        args.insert(1, "chat".into());
    }
    args
}

/// llama.cpp's `-ngl N` (and `-ngl=N`) for `--gpu-layers N`: clap has no multi-letter
/// short flags. Arguments after `--` are left alone.
fn ngl_spelling(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut rest = false;
    args.into_iter()
        .map(|a| {
            rest |= a == "--";
            match a.to_str() {
                Some("-ngl") if !rest => "--gpu-layers".into(),
                Some(s) if !rest && s.starts_with("-ngl=") => {
                    format!("--gpu-layers={}", &s[5..]).into()
                }
                _ => a,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{chat_spelling, ngl_spelling};

    #[test]
    fn ngl_is_gpu_layers() {
        let spell = |args: &[&str]| -> Vec<String> {
            ngl_spelling(args.iter().map(|a| a.into()).collect())
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            spell(&["torchless", "run", "-ngl", "12", "m.gguf"]),
            ["torchless", "run", "--gpu-layers", "12", "m.gguf"]
        );
        assert_eq!(
            spell(&["torchless", "bench", "-ngl=3", "--", "-ngl"]),
            ["torchless", "bench", "--gpu-layers=3", "--", "-ngl"]
        );
    }

    fn spell(args: &[&str]) -> Vec<String> {
        let v = args.iter().map(|a| a.into()).collect();
        chat_spelling(v)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn chat_flag_becomes_the_subcommand() {
        assert_eq!(
            spell(&["torchless", "--chat", "--show-thinking", "m.gguf"]),
            ["torchless", "chat", "--show-thinking", "m.gguf"]
        );
        assert_eq!(
            spell(&["torchless", "--show-thinking", "--chat", "m.gguf"]),
            ["torchless", "chat", "--show-thinking", "m.gguf"]
        );
        // Not a spelling of chat: a prompt or value that happens to read --chat.
        assert_eq!(
            spell(&["torchless", "run", "-p", "--chat"]),
            ["torchless", "run", "-p", "--chat"]
        );
        assert_eq!(
            spell(&["torchless", "info", "x"]),
            ["torchless", "info", "x"]
        );
    }
}

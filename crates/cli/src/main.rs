//! `torchless`: run LLMs from GGUF files on the CPU.
//!
//! Each subcommand lives in its own file under `commands/`; adding one takes a variant in
//! [`Command`] and an arm in [`main`]'s match.

mod commands;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => commands::info::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Perplexity(args) => commands::perplexity::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Download(args) => commands::download::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Streams a completion to stdout as it is generated, sampling with a fixed seed:
//! `cargo run --release -p torchless --example stream -- [MODEL] [PROMPT]`.

use std::io::Write;

use torchless::{GenerateOptions, Model, SamplingParams};

fn main() -> Result<(), torchless::Error> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(spec) => torchless::download(&spec)?,
        None => torchless::default_model()?,
    };
    let prompt = args
        .next()
        .unwrap_or_else(|| "Write a haiku about the ocean.".into());
    let model = Model::load_lazy(path)?; // memory-mapped: little RAM, slower per token
    let prompt = model.chat_prompt(&prompt)?.unwrap_or(prompt);
    let opts = GenerateOptions {
        max_tokens: Some(128),
        sampling: SamplingParams {
            seed: 42,
            ..Default::default() // llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95
        },
        stop: vec!["\n\n\n".into()],
        logprobs: None,
        ..Default::default()
    };
    let mut stdout = std::io::stdout().lock();
    let out = model.stream(&prompt, &opts, |event| {
        // A closed stdout (`| head`) stops the generation.
        stdout.write_all(event.text.as_bytes()).is_ok() && stdout.flush().is_ok()
    })?;
    eprintln!(
        "\n[{} tokens, finish: {}]",
        out.tokens.len(),
        out.finish_reason()
    );
    Ok(())
}

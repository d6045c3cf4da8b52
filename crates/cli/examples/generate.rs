//! Greedy completion of a prompt, printed when done:
//! `cargo run --release -p torchless --example generate -- [MODEL] [PROMPT]`
//! (MODEL: a .gguf path or `owner/name[:QUANT]`; default SmolLM2-135M-Instruct).

use torchless::{GenerateOptions, LoadOptions, Model};

fn main() -> Result<(), torchless::Error> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(spec) => torchless::download(&spec)?,
        None => torchless::default_model()?,
    };
    let prompt = args.next().unwrap_or_else(|| "Why is the sky blue?".into());
    let model = Model::load_with(path, &LoadOptions::default())?;
    // Instruct models answer best inside their chat template.
    let prompt = model.chat_prompt(&prompt)?.unwrap_or(prompt);
    let out = model.generate(&prompt, &GenerateOptions::greedy(64))?;
    println!("{}", out.text);
    if let Some(stats) = out.stats {
        eprintln!(
            "{} prompt tokens, {} generated at {:.1} tok/s, stop: {}",
            stats.prompt_tokens,
            stats.generated_tokens,
            stats.gen_tps(),
            stats.stop
        );
    }
    Ok(())
}

//! A multi-turn chat on stdin/stdout: one message per line, the KV cache kept across turns,
//! a reasoning model's trace shown in brackets.
//! `printf 'Hi!\nWhat did I just say?\n' | cargo run --release -p torchless --example chat -- [MODEL]`

use std::io::{BufRead, Write};

use torchless::{GenerateOptions, Model, Segment};

fn main() -> Result<(), torchless::Error> {
    let path = match std::env::args().nth(1) {
        Some(spec) => torchless::download(&spec)?,
        None => torchless::default_model()?,
    };
    let model = Model::load(path)?;
    let mut chat = model.chat(Some("You are a helpful assistant. Answer briefly."))?;
    let opts = GenerateOptions::greedy(128);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let mut out = std::io::stdout().lock();
        let reply = chat.send(&line, &opts, |segment| {
            let _ = match segment {
                Segment::Reasoning(t) => write!(out, "[{t}]"),
                Segment::Answer(t) => write!(out, "{t}"),
            };
            out.flush().is_ok()
        })?;
        writeln!(out).ok();
        eprintln!(
            "[{} tokens reused, {} new]",
            reply.reused_tokens, reply.completion.prompt_tokens
        );
    }
    Ok(())
}

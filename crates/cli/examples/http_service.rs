//! The engine inside your own axum service: the OpenAI-compatible routes of
//! `torchless serve` mounted under `/llm`, next to a route of the application's own.
//! `cargo run --release -p torchless --example http_service -- [MODEL]`, then
//! `curl -s 127.0.0.1:3000/llm/v1/chat/completions -H 'Content-Type: application/json'
//!  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":16}'`.

use axum::routing::get;
use torchless::server::{ServeOptions, Server};
use torchless::Model;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args().nth(1) {
        Some(spec) => torchless::download(&spec)?,
        None => torchless::default_model()?,
    };
    let (model, session) = Model::load(path)?.into_engine();
    let opts = ServeOptions {
        model_name: "smollm2".into(),
        parallel: 2, // two KV-cache slots, decoded together
        ..Default::default()
    };
    let llm = Server::new(model, session, opts)?;
    let app = axum::Router::new()
        .route("/", get(|| async { "my app; the model is under /llm\n" }))
        .nest("/llm", llm.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

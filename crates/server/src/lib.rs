//! `torchless serve`: an OpenAI-compatible HTTP server over one loaded model.
//!
//! * `POST /v1/chat/completions`, `POST /v1/completions` (streaming as server-sent events
//!   or not), `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text),
//!   `POST /tokenize`, `POST /detokenize` (llama-server's shapes), `GET /` a chat page.
//! * Errors in OpenAI's JSON shape (`{"error": {"message", "type", "param", "code"}}`).
//! * Requests go to `engine`'s scheduler: continuous batching over `parallel` KV-cache
//!   slots, prefix reuse per slot; a client that goes away frees its slot at once.
//!
//! The HTTP side is here; generation is `engine`'s.

mod api;
mod page;
mod routes;
mod tool_calls;
mod tools;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

pub use api::ApiError;
pub use tokio::runtime::Runtime;
pub use worker::Metrics;

/// A small multi-threaded runtime for the HTTP side (the model has its own worker thread and
/// compute pool; two I/O threads are plenty).
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("torchless-http")
        .enable_all()
        .build()
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The model's name in `/v1/models` and responses.
    pub model_name: String,
    /// Bearer token every endpoint but `/health` requires (`--api-key`).
    pub api_key: Option<String>,
    /// Origin allowed by CORS (`--cors`); none = CORS off.
    pub cors: Option<String>,
    /// Sequences served at once (KV-cache slots, decoded together).
    pub parallel: usize,
    /// Requests waiting for a slot before new ones get 503.
    pub queue: usize,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            model_name: "model".into(),
            api_key: None,
            cors: None,
            parallel: 4,
            queue: 64,
            max_body_bytes: 8 << 20,
        }
    }
}

/// A server over one model: the router to mount, and the scheduler behind it.
pub struct Server {
    state: Arc<routes::AppState>,
}

/// What loading produces: the model and the settings of its KV-cache slots.
pub type Loaded = (engine::LoadedModel, engine::SessionOptions);

impl Server {
    /// A server over a model already loaded.
    pub fn new(
        model: engine::LoadedModel,
        session: engine::SessionOptions,
        opts: ServeOptions,
    ) -> Result<Self, engine::EngineError> {
        let srv = Server::empty(opts);
        srv.install((model, session))?;
        Ok(srv)
    }

    /// A server whose model is loaded by `load` on a background thread: it can listen at
    /// once, answering `/health` (and every model route) with 503 until the model is ready,
    /// as llama-server does. A failed load is reported by those routes and on stderr.
    pub fn loading(
        opts: ServeOptions,
        load: impl FnOnce() -> Result<Loaded, String> + Send + 'static,
    ) -> Self {
        let srv = Server::empty(opts);
        let state = srv.state.clone();
        std::thread::spawn(move || {
            let r = load().and_then(|loaded| {
                Server {
                    state: state.clone(),
                }
                .install(loaded)
                .map_err(|e| e.to_string())
            });
            if let Err(e) = r {
                eprintln!("serve: the model failed to load: {e}");
                let _ = state.load_error.set(e);
            }
        });
        srv
    }

    fn empty(opts: ServeOptions) -> Self {
        Server {
            state: Arc::new(routes::AppState {
                worker: std::sync::OnceLock::new(),
                load_error: std::sync::OnceLock::new(),
                opts,
            }),
        }
    }

    fn install(&self, (model, session): Loaded) -> Result<(), engine::EngineError> {
        let o = &self.state.opts;
        let worker = worker::Worker::start(model, &session, o.parallel, o.queue)?;
        let _ = self.state.worker.set(worker);
        Ok(())
    }

    /// The HTTP routes (for embedding in another axum app, or for tests).
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Serves on `addr` until SIGINT/SIGTERM, then stops accepting and lets requests in
    /// flight finish (a stream ends when its generation does).
    pub async fn serve(
        self,
        addr: SocketAddr,
        on_ready: impl FnOnce(SocketAddr),
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        let stopping = Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            shutdown().await;
            notify.notify_one();
        });
        // After the signal, requests in flight get SHUTDOWN_GRACE to finish; then the
        // process stops anyway (dropping their streams cancels their generations).
        tokio::select! {
            r = server => r,
            _ = async {
                stopping.notified().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Ok(()),
        }
    }
}

/// How long requests in flight may run on after SIGINT/SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

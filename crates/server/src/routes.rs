//! The HTTP routes: parse, check, queue for the worker, answer in OpenAI's shapes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{ConstraintSpec, StopReason};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::{self, ApiError, ChatRequest, Common, CompletionRequest, MAX_TOP_LOGPROBS};
use crate::tool_calls::{chat_message, tool_deltas, CallParser, Piece, Syntax, MISTRAL_MARKER};
use crate::tools;
use crate::worker::{Event, Job, TokenInfo, Worker};
use crate::ServeOptions;

pub(crate) struct AppState {
    /// Set once the model has loaded; until then every model route answers 503.
    pub worker: std::sync::OnceLock<Worker>,
    /// Why loading failed, if it did.
    pub load_error: std::sync::OnceLock<String>,
    pub opts: ServeOptions,
}

impl AppState {
    fn worker(&self) -> Result<&Worker, ApiError> {
        if let Some(w) = self.worker.get() {
            return Ok(w);
        }
        Err(match self.load_error.get() {
            Some(e) => ApiError::internal(format!("the model failed to load: {e}")),
            None => {
                let mut e = ApiError::busy("the model is still loading; retry shortly");
                e.code = Some("model_loading");
                e
            }
        })
    }
}

type AppRef = Arc<AppState>;

pub(crate) fn router(state: AppRef) -> Router {
    let limit = state.opts.max_body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// API key (every route but `/health` and the page's HTML) and CORS.
async fn guard(State(st): State<AppRef>, req: Request, next: Next) -> Response {
    let cors = st.opts.cors.clone();
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        add_cors(&mut r, cors.as_deref());
        return r;
    }
    let open = matches!(req.uri().path(), "/health" | "/");
    if let (Some(key), false) = (&st.opts.api_key, open) {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k == key);
        if !ok {
            let mut r = ApiError::unauthorized().into_response();
            add_cors(&mut r, cors.as_deref());
            return r;
        }
    }
    let mut r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        r = ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the request body is larger than {} bytes",
                st.opts.max_body_bytes
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        }
        .into_response();
    }
    add_cors(&mut r, cors.as_deref());
    r
}

fn add_cors(r: &mut Response, origin: Option<&str>) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
}

async fn page(State(st): State<AppRef>) -> Html<String> {
    Html(crate::page::html(&st.opts.model_name))
}

/// 200 once the model is loaded; 503 while it loads (as llama-server does).
async fn health(State(st): State<AppRef>) -> Response {
    match st.worker() {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

async fn models(State(st): State<AppRef>) -> Response {
    let w = match st.worker() {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.opts.model_name,
            "object": "model",
            "created": now(),
            "owned_by": "torchless",
            "meta": {
                "architecture": w.model.arch(),
                "n_vocab": w.model.n_vocab(),
                "n_ctx_train": w.model.trained_context(),
                "n_ctx": w.max_seq_len,
            },
        }],
    }))
    .into_response()
}

async fn tokenize(State(st): State<AppRef>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let r: api::TokenizeRequest = api::parse(&body)?;
    let ids = st
        .worker()?
        .model
        .tokenize(&r.content, r.add_special, r.parse_special)
        .map_err(ApiError::from_engine)?;
    Ok(Json(json!({"tokens": ids})))
}

async fn detokenize(State(st): State<AppRef>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let r: api::DetokenizeRequest = api::parse(&body)?;
    let w = st.worker()?;
    let n = w.model.n_vocab();
    if let Some(bad) = r.tokens.iter().find(|&&t| t as usize >= n) {
        return Err(ApiError::invalid(
            format!("token {bad} is outside the vocabulary of {n}"),
            Some("tokens"),
        ));
    }
    Ok(Json(json!({"content": w.model.detokenize(&r.tokens)})))
}

async fn metrics(State(st): State<AppRef>) -> Response {
    let w = match st.worker() {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let m = &w.metrics;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rate = |tokens: u64, ms: u64| {
        if ms == 0 {
            0.0
        } else {
            tokens as f64 * 1000.0 / ms as f64
        }
    };
    let reqs = g(&m.completed).max(1);
    let stats = w.stats();
    let text = format!(
        "# TYPE torchless_requests_total counter\ntorchless_requests_total {}\n\
         # TYPE torchless_requests_failed_total counter\ntorchless_requests_failed_total {}\n\
         # TYPE torchless_prompt_tokens_total counter\ntorchless_prompt_tokens_total {}\n\
         # TYPE torchless_prompt_tokens_cached_total counter\ntorchless_prompt_tokens_cached_total {}\n\
         # TYPE torchless_generated_tokens_total counter\ntorchless_generated_tokens_total {}\n\
         # TYPE torchless_prompt_tokens_per_second gauge\ntorchless_prompt_tokens_per_second {:.3}\n\
         # TYPE torchless_generation_tokens_per_second gauge\ntorchless_generation_tokens_per_second {:.3}\n\
         # TYPE torchless_time_to_first_token_seconds_avg gauge\ntorchless_time_to_first_token_seconds_avg {:.6}\n\
         # TYPE torchless_queue_depth gauge\ntorchless_queue_depth {}\n\
         # TYPE torchless_slots_busy gauge\ntorchless_slots_busy {}\n\
         # TYPE torchless_slots_total gauge\ntorchless_slots_total {}\n",
        g(&m.requests),
        g(&m.requests_failed),
        g(&m.prompt_tokens),
        g(&m.cached_prompt_tokens),
        g(&m.generated_tokens),
        rate(g(&m.prompt_tokens) - g(&m.cached_prompt_tokens), g(&m.prompt_ms)),
        rate(g(&m.generated_tokens), g(&m.gen_ms)),
        g(&m.first_token_ms_sum) as f64 / 1000.0 / reqs as f64,
        stats.queued,
        stats.active,
        stats.n_parallel,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Which endpoint a generation answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// A request turned into a job, with what the answer needs.
struct Prepared {
    kind: Kind,
    id: String,
    model: String,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    /// Parse tool calls out of the answer, in this syntax (the request has tools).
    tools: Option<Syntax>,
    rx: UnboundedReceiver<Event>,
}

/// What a request's output must match, and the request field it came from (for errors).
struct Structured {
    spec: Option<ConstraintSpec>,
    param: &'static str,
    tools: Option<Syntax>,
    /// Mistral's `[TOOL_CALLS]` token id, when its calls are to be parsed.
    marker: Option<u32>,
}

fn submit(
    st: &AppState,
    kind: Kind,
    ids: Vec<u32>,
    split: Option<String>,
    common: &Common,
    logprobs: Option<usize>,
    structured: Structured,
) -> Result<Prepared, ApiError> {
    let w = st.worker()?;
    let room = w.max_seq_len.saturating_sub(ids.len());
    if ids.len() > w.max_seq_len {
        let mut e = ApiError::invalid(
            format!(
                "the prompt has {} tokens but the context holds {} ({} too many); shorten it or \
                 start the server with a larger --max-seq-len",
                ids.len(),
                w.max_seq_len,
                ids.len() - w.max_seq_len
            ),
            Some(if kind == Kind::Chat {
                "messages"
            } else {
                "prompt"
            }),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    let mut opts = common.options(logprobs, room, w.model.n_vocab())?;
    if let Some(spec) = &structured.spec {
        let c = w.model.compile_constraint(spec).map_err(|e| {
            ApiError::invalid(format!("{}: {e}", structured.param), Some(structured.param))
        })?;
        opts.constraint = Some(c);
    }
    let (tx, rx) = unbounded_channel();
    w.submit(Job {
        ids,
        split_thinking: split,
        opts,
        show_token: structured
            .marker
            .filter(|_| structured.tools == Some(Syntax::Mistral))
            .map(|id| (id, MISTRAL_MARKER)),
        events: tx,
    })?;
    Ok(Prepared {
        kind,
        id: next_id(if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        }),
        model: st.opts.model_name.clone(),
        stream: common.stream,
        include_usage: common.include_usage(),
        logprobs: logprobs.is_some(),
        tools: structured.tools,
        rx,
    })
}

async fn chat(State(st): State<AppRef>, body: Bytes) -> Result<Response, ApiError> {
    let r: ChatRequest = api::parse(&body)?;
    if r.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    let mut msgs = r
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| m.to_template(i))
        .collect::<Result<Vec<_>, _>>()?;
    let format = tools::response_format(r.common.response_format.as_ref())?;
    let model = &st.worker()?.model;
    let mut syntax = Syntax::of_template(model.chat_template());
    // Mistral's calls open with a control token; without one such token in the vocabulary
    // the template's syntax cannot be followed, and the tools prompt's Hermes blocks are used.
    let marker = match model.tokenize(MISTRAL_MARKER, false, true) {
        Ok(ids) if syntax == Syntax::Mistral && ids.len() == 1 => Some(ids[0]),
        _ => None,
    };
    if syntax == Syntax::Mistral && marker.is_none() {
        syntax = Syntax::Hermes;
    }
    let plan = tools::plan(
        r.common.tools.as_ref(),
        r.common.tool_choice.as_ref(),
        r.common.parallel_tool_calls,
        syntax,
        marker,
    )?;
    let native = model.chat_template_handles_tools();
    tools::prepare_messages(&mut msgs, plan.as_ref(), native);
    let mut extra = r.chat_template_kwargs.clone();
    if let (Some(p), true) = (&plan, native) {
        extra
            .get_or_insert_with(Default::default)
            .insert("tools".into(), Value::from(p.tools.clone()));
    }
    let extra = extra.map(|m| Value::Object(m).to_string());
    // A required call's grammar wins over response_format (the call is the answer).
    let structured = match plan.as_ref().and_then(|p| p.constraint.clone()) {
        Some(spec) => Structured {
            spec: Some(spec),
            param: "tools",
            tools: Some(syntax),
            marker,
        },
        None => Structured {
            spec: format,
            param: "response_format",
            tools: plan.is_some().then_some(syntax),
            marker,
        },
    };
    let text = model
        .render_messages_json(&Value::from(msgs).to_string(), true, extra.as_deref())
        .map_err(ApiError::from_engine)?;
    let ids = model
        .tokenize_chat_prompt(&text)
        .map_err(ApiError::from_engine)?;
    let top = r.top_logprobs.unwrap_or(0);
    if top > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
            Some("top_logprobs"),
        ));
    }
    if r.top_logprobs.is_some() && !r.logprobs {
        return Err(ApiError::invalid(
            "top_logprobs needs logprobs: true",
            Some("top_logprobs"),
        ));
    }
    let p = submit(
        &st,
        Kind::Chat,
        ids,
        Some(text),
        &r.common,
        r.logprobs.then_some(top),
        structured,
    )?;
    Ok(answer(p).await)
}

async fn completions(State(st): State<AppRef>, body: Bytes) -> Result<Response, ApiError> {
    let r: CompletionRequest = api::parse(&body)?;
    if r.echo {
        return Err(ApiError::unsupported("echo", "echoing the prompt"));
    }
    if r.common.tools.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ApiError::invalid(
            "tools are a chat feature: use /v1/chat/completions",
            Some("tools"),
        ));
    }
    let structured = Structured {
        spec: tools::response_format(r.common.response_format.as_ref())?,
        param: "response_format",
        tools: None,
        marker: None,
    };
    let model = &st.worker()?.model;
    let ids = match r.prompt {
        api::Prompt::Text(t) => model
            .tokenize(&t, true, true)
            .map_err(ApiError::from_engine)?,
        api::Prompt::Texts(v) if v.len() == 1 => model
            .tokenize(&v[0], true, true)
            .map_err(ApiError::from_engine)?,
        api::Prompt::Texts(_) => {
            return Err(ApiError::unsupported("prompt", "one prompt per request"))
        }
        api::Prompt::Ids(ids) => ids,
    };
    if ids.is_empty() {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    let lp = r.logprobs.map(|n| n.min(MAX_TOP_LOGPROBS));
    let p = submit(&st, Kind::Completion, ids, None, &r.common, lp, structured)?;
    Ok(answer(p).await)
}

fn finish_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::Eos | StopReason::StopString => "stop",
        StopReason::Limit | StopReason::ContextFull => "length",
    }
}

fn usage(prompt: usize, cached: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

fn bytes_of(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn chat_logprob(t: &TokenInfo) -> Value {
    json!({
        "token": t.text,
        "logprob": t.logprob,
        "bytes": bytes_of(&t.text),
        "top_logprobs": t.top.iter().map(|(_, s, lp)| json!({"token": s, "logprob": lp, "bytes": bytes_of(s)})).collect::<Vec<_>>(),
    })
}

/// Legacy completions logprobs, accumulated.
#[derive(Default)]
struct LegacyLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<f64>,
    top: Vec<Value>,
    offsets: Vec<usize>,
}

impl LegacyLogprobs {
    fn push(&mut self, t: &TokenInfo, offset: usize) {
        self.tokens.push(t.text.clone());
        self.token_logprobs.push(t.logprob);
        let mut m = serde_json::Map::new();
        for (_, s, lp) in &t.top {
            m.insert(s.clone(), json!(lp));
        }
        self.top.push(Value::Object(m));
        self.offsets.push(offset);
    }

    fn json(&self) -> Value {
        json!({"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top, "text_offset": self.offsets})
    }
}

async fn answer(mut p: Prepared) -> Response {
    if p.stream {
        return stream(p).into_response();
    }
    let (mut content, mut reasoning) = (String::new(), String::new());
    let mut chat_lp: Vec<Value> = Vec::new();
    let mut legacy = LegacyLogprobs::default();
    while let Some(ev) = p.rx.recv().await {
        match ev {
            Event::Piece {
                content: c,
                reasoning: r,
                token,
            } => {
                if let Some(t) = &token {
                    chat_lp.push(chat_logprob(t));
                    legacy.push(t, content.len());
                }
                content.push_str(&c);
                reasoning.push_str(&r);
            }
            Event::Error(e) => return e.into_response(),
            Event::Done {
                stop,
                prompt_tokens,
                cached_tokens: cached,
                completion_tokens,
                prompt_ms,
                gen_ms,
            } => {
                let choice = match p.kind {
                    Kind::Chat => {
                        let (message, called) = chat_message(content, p.tools);
                        let mut message = message;
                        if !reasoning.is_empty() {
                            message["reasoning_content"] = Value::from(reasoning.as_str());
                        }
                        json!({
                            "index": 0,
                            "message": message,
                            "logprobs": if p.logprobs { json!({"content": chat_lp}) } else { Value::Null },
                            "finish_reason": if called { "tool_calls" } else { finish_reason(stop) },
                        })
                    }
                    Kind::Completion => json!({
                        "index": 0,
                        "text": content,
                        "logprobs": if p.logprobs { legacy.json() } else { Value::Null },
                        "finish_reason": finish_reason(stop),
                    }),
                };
                let object = if p.kind == Kind::Chat {
                    "chat.completion"
                } else {
                    "text_completion"
                };
                return Json(json!({
                    "id": p.id,
                    "object": object,
                    "created": now(),
                    "model": p.model,
                    "choices": [choice],
                    "usage": usage(prompt_tokens, cached, completion_tokens),
                    "timings": {"prompt_ms": prompt_ms, "predicted_ms": gen_ms},
                }))
                .into_response();
            }
        }
    }
    ApiError::internal("the model worker stopped mid-request").into_response()
}

/// Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`.
fn stream(p: Prepared) -> impl IntoResponse {
    let (tx, rx) = unbounded_channel::<Result<SseEvent, Infallible>>();
    let Prepared {
        kind,
        id,
        model,
        include_usage,
        logprobs,
        tools,
        rx: mut events,
        ..
    } = p;
    let created = now();
    let object = if kind == Kind::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let chunk = move |choice: Value, usage: Option<Value>| {
        let mut v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
        if let Some(u) = usage {
            v["choices"] = json!([]);
            v["usage"] = u;
        }
        SseEvent::default().data(v.to_string())
    };
    tokio::spawn(async move {
        let mut offset = 0usize;
        let mut parser = CallParser::streaming(tools.unwrap_or(Syntax::Hermes));
        let send = |e: SseEvent| tx.send(Ok(e)).is_ok();
        // With tools, answer text goes through the call parser; each piece is one or two
        // deltas (the call index counts the calls sent so far).
        let send_pieces = |pieces: Vec<Piece>, calls_before: usize| {
            // Calls started so far; a call's pieces carry its index.
            let mut started = calls_before;
            for piece in pieces {
                let index = match piece {
                    Piece::Call { .. } | Piece::CallStart { .. } => {
                        started += 1;
                        started - 1
                    }
                    _ => started.saturating_sub(1),
                };
                for d in tool_deltas(piece, index) {
                    let c =
                        json!({"index": 0, "delta": d, "logprobs": null, "finish_reason": null});
                    if !send(chunk(c, None)) {
                        return false;
                    }
                }
            }
            true
        };
        if kind == Kind::Chat
            && !send(chunk(
                json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
                None,
            ))
        {
            return;
        }
        while let Some(ev) = events.recv().await {
            let alive = match ev {
                Event::Piece {
                    content,
                    reasoning,
                    token,
                } => {
                    if content.is_empty() && reasoning.is_empty() && token.is_none() {
                        continue;
                    }
                    if tools.is_some() {
                        let mut ok = true;
                        if !reasoning.is_empty() {
                            let d = json!({"reasoning_content": reasoning});
                            let c = json!({"index": 0, "delta": d, "logprobs": null, "finish_reason": null});
                            ok = send(chunk(c, None));
                        }
                        let before = parser.calls;
                        let alive = ok && send_pieces(parser.push(&content), before);
                        if !alive {
                            break;
                        }
                        continue;
                    }
                    let choice = match kind {
                        Kind::Chat => {
                            let mut delta = json!({});
                            if !content.is_empty() {
                                delta["content"] = Value::from(content.as_str());
                            }
                            if !reasoning.is_empty() {
                                delta["reasoning_content"] = Value::from(reasoning.as_str());
                            }
                            let lp = match (&token, logprobs) {
                                (Some(t), true) => json!({"content": [chat_logprob(t)]}),
                                _ => Value::Null,
                            };
                            json!({"index": 0, "delta": delta, "logprobs": lp, "finish_reason": null})
                        }
                        Kind::Completion => {
                            let lp = match (&token, logprobs) {
                                (Some(t), true) => {
                                    let mut l = LegacyLogprobs::default();
                                    l.push(t, offset);
                                    l.json()
                                }
                                _ => Value::Null,
                            };
                            json!({"index": 0, "text": content, "logprobs": lp, "finish_reason": null})
                        }
                    };
                    offset += content.len();
                    send(chunk(choice, None))
                }
                Event::Error(e) => {
                    let _ = send(SseEvent::default().data(e.body().to_string()));
                    false
                }
                Event::Done {
                    stop,
                    prompt_tokens,
                    cached_tokens: cached,
                    completion_tokens,
                    ..
                } => {
                    let before = parser.calls;
                    if tools.is_some() && !send_pieces(parser.finish(), before) {
                        break;
                    }
                    let fr = if parser.calls > 0 {
                        "tool_calls"
                    } else {
                        finish_reason(stop)
                    };
                    let last = match kind {
                        Kind::Chat => {
                            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": fr})
                        }
                        Kind::Completion => {
                            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": fr})
                        }
                    };
                    let mut ok = send(chunk(last, None));
                    if include_usage && ok {
                        ok = send(chunk(
                            Value::Null,
                            Some(usage(prompt_tokens, cached, completion_tokens)),
                        ));
                    }
                    let _ = ok && send(SseEvent::default().data("[DONE]"));
                    false
                }
            };
            if !alive {
                break;
            }
        }
        // Dropping `events` here tells the worker to stop if it is still generating.
    });
    Sse::new(UnboundedReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

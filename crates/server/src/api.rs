//! The OpenAI request and error shapes, and how they map onto engine settings.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{EngineError, GenerateOptions, SamplingParams};
use serde::Deserialize;
use serde_json::{json, Value};

/// An error as OpenAI's API reports it, with its HTTP status.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn unsupported(param: &str, what: &str) -> Self {
        let mut e = ApiError::invalid(
            format!("`{param}` is not supported yet: {what}"),
            Some(param),
        );
        e.code = Some("unsupported_parameter");
        e
    }

    pub fn busy(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "invalid or missing API key (send `Authorization: Bearer KEY`)".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("{what} not found"),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    pub fn from_engine(e: EngineError) -> Self {
        match &e {
            EngineError::PromptTooLong { prompt, used, ctx } => {
                let mut err = ApiError::invalid(
                    format!(
                        "the prompt has {} tokens but the context holds {ctx} ({} too many); \
                         shorten it or start the server with a larger --max-seq-len",
                        prompt + used,
                        prompt + used - ctx
                    ),
                    Some("messages"),
                );
                err.code = Some("context_length_exceeded");
                err
            }
            EngineError::InvalidParam(_)
            | EngineError::EmptyPrompt
            | EngineError::BadToken { .. } => ApiError::invalid(e.to_string(), None),
            EngineError::Tokenizer(_) => ApiError::invalid(e.to_string(), Some("messages")),
            EngineError::Constraint(_) => ApiError::invalid(e.to_string(), None),
            _ => ApiError::internal(e.to_string()),
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Parses a JSON body, with OpenAI-shaped errors for bad JSON and wrong field types.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("the request body is not valid JSON: {e}")
            }
            _ => format!("invalid request: {e}"),
        };
        ApiError::invalid(msg, None)
    })
}

/// A string or a list of strings (`stop`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Debug)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length settings shared by both completion endpoints.
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub n: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    pub response_format: Option<Value>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
}

/// Most stop strings a request may send.
const MAX_STOP: usize = 16;
/// Most alternatives per token (`top_logprobs`), as OpenAI allows.
pub const MAX_TOP_LOGPROBS: usize = 20;

impl Common {
    /// The engine settings; `logprobs` is the number of alternatives per token wanted (Some
    /// even when 0: the chosen token's own logprob).
    pub fn options(
        &self,
        logprobs: Option<usize>,
        room: usize,
        n_vocab: usize,
    ) -> Result<GenerateOptions, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::unsupported(
                    "n",
                    "one choice per request; send several requests",
                ));
            }
        }
        let logit_bias = self.logit_bias(n_vocab)?;
        let limit = self.max_completion_tokens.or(self.max_tokens);
        let max_tokens = match limit {
            Some(0) => {
                return Err(ApiError::invalid(
                    "max_tokens must be at least 1",
                    Some("max_tokens"),
                ))
            }
            // Beyond the context it cannot run anyway; capping keeps 10^12 harmless.
            Some(n) => Some((n.min(room.max(1) as u64)) as usize),
            None => None,
        };
        let mut s = SamplingParams::default();
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if let Some(k) = self.top_k {
            s.top_k = k.max(0) as usize;
        }
        if let Some(p) = self.min_p {
            s.min_p = p;
        }
        if let Some(p) = self.presence_penalty {
            s.presence_penalty = p;
        }
        if let Some(p) = self.frequency_penalty {
            s.frequency_penalty = p;
        }
        if let Some(p) = self.repeat_penalty {
            s.repeat_penalty = p;
        }
        s.seed = self.seed.unwrap_or_else(engine::random_seed);
        s.validate()
            .map_err(|e| ApiError::invalid(e.to_string(), None))?;
        let stop = self
            .stop
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(
                format!("at most {MAX_STOP} stop strings"),
                Some("stop"),
            ));
        }
        Ok(GenerateOptions {
            max_tokens,
            sampling: s,
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            logprobs,
            constraint: None,
            logit_bias,
        })
    }

    /// `logit_bias` as OpenAI defines it: token ids (as strings) of this vocabulary mapped to
    /// numbers in [-100, 100], added to the logits.
    fn logit_bias(&self, n_vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
        let bad = |m: String| ApiError::invalid(m, Some("logit_bias"));
        let Some(map) = &self.logit_bias else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(k, v)| {
                let id: u32 = k
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("logit_bias key {k:?} is not a token id")))?;
                if id as usize >= n_vocab {
                    return Err(bad(format!(
                        "logit_bias token {id} is not in the vocabulary ({n_vocab} tokens)"
                    )));
                }
                let b = v
                    .as_f64()
                    .filter(|b| (-100.0..=100.0).contains(b))
                    .ok_or_else(|| {
                        bad(format!(
                            "logit_bias of token {id} must be a number in [-100, 100]"
                        ))
                    })?;
                Ok((id, b as f32))
            })
            .collect()
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// `POST /v1/chat/completions`. One model is served, so `model` is accepted whatever it
/// names (as llama-server does) and not read.
#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageIn>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    /// Extra chat-template variables (e.g. `{"enable_thinking": false}`).
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, Debug)]
pub struct ChatMessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    pub reasoning_content: Option<String>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    /// An assistant turn's calls, as OpenAI returned them (rendered back by the template).
    pub tool_calls: Option<Value>,
}

impl ChatMessageIn {
    /// The message as the chat template gets it: content as one string (text parts joined).
    pub fn to_template(&self, i: usize) -> Result<Value, ApiError> {
        let param = format!("messages[{i}]");
        let role = match self.role.as_str() {
            "system" | "user" | "assistant" | "tool" => self.role.clone(),
            "developer" => "system".into(),
            other => {
                return Err(ApiError::invalid(
                    format!("{param}.role: {other:?} is not one of system, developer, user, assistant, tool"),
                    Some(&param),
                ))
            }
        };
        let content = match &self.content {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        (ty, _) => {
                            return Err(ApiError::invalid(
                                format!(
                                    "{param}.content[{j}]: only text parts are supported (got {})",
                                    ty.unwrap_or("no type")
                                ),
                                Some(&param),
                            ))
                        }
                    }
                }
                text
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{param}.content must be a string or a list of text parts"),
                    Some(&param),
                ))
            }
        };
        let mut v = json!({"role": role, "content": content});
        if let Some(r) = &self.reasoning_content {
            v["reasoning_content"] = Value::from(r.as_str());
        }
        if let Some(n) = &self.name {
            v["name"] = Value::from(n.as_str());
        }
        if let Some(id) = &self.tool_call_id {
            v["tool_call_id"] = Value::from(id.as_str());
        }
        match &self.tool_calls {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) if self.role == "assistant" => {
                v["tool_calls"] = Value::from(calls.clone());
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{param}.tool_calls must be a list, on an assistant message"),
                    Some(&param),
                ))
            }
        }
        Ok(v)
    }
}

/// A prompt: text, texts (one), or token ids.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
}

/// `POST /v1/completions` (`model` as for chat).
#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub common: Common,
    /// Legacy: number of alternatives per token.
    pub logprobs: Option<usize>,
    #[serde(default)]
    pub echo: bool,
}

/// `POST /tokenize` (llama-server's shape).
#[derive(Deserialize, Debug)]
pub struct TokenizeRequest {
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
    #[serde(default = "yes")]
    pub parse_special: bool,
}

fn yes() -> bool {
    true
}

/// `POST /detokenize`.
#[derive(Deserialize, Debug)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

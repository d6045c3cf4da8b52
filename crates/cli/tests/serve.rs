//! `torchless serve` as a process, spoken to over real HTTP: the OpenAI shapes, streaming,
//! prefix reuse, errors with their statuses, the API key, and the official `openai` Python
//! client (tests/openai_client.py) against it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::real_model;
use serde_json::{json, Value};

/// A server on a free port, killed when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> Serve {
    let model = real_model("smollm2-135m-instruct-q4_1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "serve",
            model.to_str().unwrap(),
            "--port",
            "0",
            "--max-seq-len",
            "512",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    // It listens before the model is loaded: /health is 503 until then.
    for _ in 0..600 {
        match http(&addr, "GET", "/health", &[], b"") {
            (200, _, _) => return Serve { child, addr },
            (503, _, b) => assert!(
                String::from_utf8_lossy(&b).contains("loading"),
                "{}",
                String::from_utf8_lossy(&b)
            ),
            (st, _, b) => panic!("/health: {st} {}", String::from_utf8_lossy(&b)),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the model did not load")
}

/// One HTTP/1.1 request; returns (status, headers, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let (st, _, b) = http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn greedy_chat(content: &str, max_tokens: u32) -> Value {
    json!({"model": "x", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

#[test]
fn chat_completions_match_run_and_stream_the_same_text() {
    let s = serve(&[]);
    let (st, v) = post(
        &s.addr,
        "/v1/chat/completions",
        &greedy_chat("Why is the sky blue?", 24),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 24);
    // The same greedy answer as `torchless run` (chat template applied the same way).
    let model = real_model("smollm2-135m-instruct-q4_1");
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "run",
            model.to_str().unwrap(),
            "-p",
            "Why is the sky blue?",
            "-n",
            "24",
            "--temp",
            "0",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        text.trim_end()
    );

    // Streaming: chunks concatenate to the same text; usage last; then [DONE].
    let mut req = greedy_chat("Why is the sky blue?", 24);
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let (st, head, body) = http(
        &s.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        req.to_string().as_bytes(),
    );
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let body = String::from_utf8(body).unwrap();
    let datas: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 24);
    // The second request repeats the first prompt: all but its last token come from the cache.
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() - 1
    );
}

#[test]
fn errors_have_openai_shapes_and_statuses() {
    let s = serve(&["--api-key", "sekret"]);
    let auth = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sekret"),
    ];
    let call = |body: &[u8]| {
        let (st, _, b) = http(&s.addr, "POST", "/v1/chat/completions", &auth, body);
        (st, serde_json::from_slice::<Value>(&b).unwrap())
    };
    // No key: 401; /health needs none.
    let (st, v) = post(&s.addr, "/v1/chat/completions", &greedy_chat("hi", 1));
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(http(&s.addr, "GET", "/health", &[], b"").0, 200);
    // Bad JSON, wrong types, n > 1, malformed tools, empty messages, bad role.
    let (st, v) = call(b"{not json");
    assert_eq!(st, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{v}"
    );
    let (st, v) = call(br#"{"messages": "hello"}"#);
    assert_eq!(st, 400, "{v}");
    let (st, v) = call(
        json!({"messages": [{"role": "user", "content": "hi"}], "n": 2})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("n")));
    let (st, v) = call(
        json!({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("tools")));
    let (st, _) = call(json!({"messages": []}).to_string().as_bytes());
    assert_eq!(st, 400);
    let (st, v) = call(
        json!({"messages": [{"role": "wizard", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("wizard"));
    // A prompt longer than the context says by how much.
    let long = "word ".repeat(2000);
    let (st, v) = call(
        json!({"messages": [{"role": "user", "content": long}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("too many"),
        "{v}"
    );
    // max_tokens far beyond the context is capped, not an allocation.
    let (st, v) = call(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1_000_000_000_000u64, "temperature": 0, "stop": ["."]}).to_string().as_bytes());
    assert_eq!(st, 200, "{v}");
    // Hostile shapes: deeply nested JSON, 10^5 stop strings, 10^6 top logprobs.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (st, _) = call(format!(r#"{{"messages": {nested}}}"#).as_bytes());
    assert_eq!(st, 400);
    let stops: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let (st, v) = call(
        json!({"messages": [{"role": "user", "content": "hi"}], "stop": stops})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("stop")));
    let (st, v) = call(json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 1_000_000}).to_string().as_bytes());
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("top_logprobs"))
    );
    // An oversized body: 413 in the same shape.
    let big = vec![b' '; 9 << 20];
    let (st, _, b) = http(&s.addr, "POST", "/v1/chat/completions", &auth, &big);
    assert_eq!(st, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"],
        "request_too_large"
    );
    // Unknown routes: 404 in the same shape.
    let (st, _, b) = http(&s.addr, "GET", "/v2/nothing", &auth, b"");
    assert_eq!(st, 404);
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].is_object());
}

#[test]
fn completions_tokenize_models_metrics_and_page() {
    let s = serve(&[]);
    let (st, v) = post(
        &s.addr,
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "logprobs": 2}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        v["choices"][0]["logprobs"]["top_logprobs"][0]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    let (st, v) = post(&s.addr, "/tokenize", &json!({"content": "Hello world"}));
    assert_eq!((st, v["tokens"].clone()), (200, json!([19556, 905])));
    let (st, v) = post(&s.addr, "/detokenize", &json!({"tokens": [19556, 905]}));
    assert_eq!((st, v["content"].as_str()), (200, Some("Hello world")));
    let (st, _, b) = http(&s.addr, "GET", "/v1/models", &[], b"");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (st, v["data"][0]["id"].as_str()),
        (200, Some("smollm2-135m-instruct-q4_1.gguf"))
    );
    let (st, _, b) = http(&s.addr, "GET", "/metrics", &[], b"");
    let m = String::from_utf8(b).unwrap();
    assert_eq!(st, 200);
    assert!(m.contains("torchless_generated_tokens_total 4"), "{m}");
    // logit_bias: +100 makes " world" (905) the first token, -100 keeps the greedy one out;
    // keys that are not token ids of this vocabulary, or values outside [-100, 100], are 400s.
    let first = |bias: Value| {
        let body = json!({"prompt": "The capital of France is", "max_tokens": 1,
            "temperature": 0, "logit_bias": bias});
        let (st, v) = post(&s.addr, "/v1/completions", &body);
        assert_eq!(st, 200, "{v}");
        v["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let plain = first(json!({}));
    assert_eq!(first(json!({"905": 100})), " world");
    let (st, v) = post(&s.addr, "/tokenize", &json!({"content": plain}));
    assert_eq!(st, 200, "{v}");
    let id = v["tokens"][0].as_u64().unwrap();
    assert_ne!(first(json!({ id.to_string(): -100 })), plain);
    for bad in [
        json!({"x": 1}),
        json!({"905": 101}),
        json!({"905": "1"}),
        json!({"49152": 1}),
    ] {
        let body = json!({"prompt": "Hi", "max_tokens": 1, "logit_bias": bad});
        let (st, v) = post(&s.addr, "/v1/completions", &body);
        assert_eq!(
            (st, v["error"]["param"].as_str()),
            (400, Some("logit_bias")),
            "{v}"
        );
    }
    let (st, _, b) = http(&s.addr, "GET", "/", &[], b"");
    assert_eq!(st, 200);
    assert!(String::from_utf8(b)
        .unwrap()
        .contains("smollm2-135m-instruct-q4_1.gguf"));
}

/// response_format on both endpoints, and structured-output requests that are 400s.
#[test]
fn response_format_constrains_output_and_bad_requests_name_the_field() {
    let s = serve(&[]);
    let mut req = greedy_chat("Describe a cat.", 40);
    req["response_format"] = json!({"type": "json_object"});
    let (st, v) = post(&s.addr, "/v1/chat/completions", &req);
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let obj: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(obj.is_object(), "{text}");
    let enum_schema = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": {"enum": ["red", "green"]}}});
    let (st, v) = post(
        &s.addr,
        "/v1/completions",
        &json!({"prompt": "My favourite colour is", "max_tokens": 8, "temperature": 0, "response_format": enum_schema}),
    );
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text == "\"red\"" || text == "\"green\"", "{text:?}");

    let chat = |extra: Value| {
        let mut req = greedy_chat("hi", 4);
        req.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        post(&s.addr, "/v1/chat/completions", &req)
    };
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let cases = [
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
            "xml",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}, "required": ["a"]}}}}),
            "response_format",
            "nope",
        ),
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
            "tool_choice",
        ),
        (
            json!({"tools": tools, "tool_choice": "sometimes"}),
            "tool_choice",
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
            "tools",
            "parameters",
        ),
    ];
    for (extra, param, needle) in cases {
        let (st, v) = chat(extra.clone());
        assert_eq!(
            (st, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{extra}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{extra}: {msg}");
    }
    let (st, v) = post(
        &s.addr,
        "/v1/completions",
        &json!({"prompt": "x", "tools": tools}),
    );
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("tools")),
        "{v}"
    );
}

/// The official `openai` Python package against the server (installed by scripts/test.sh).
#[test]
fn the_openai_python_client_works_unchanged() {
    let s = serve(&[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}/v1", s.addr))
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn concurrent_streams_each_get_their_solo_answer_and_slots_come_back() {
    let s = serve(&["--parallel", "4"]);
    let prompts: Vec<String> = (0..16)
        .map(|i| format!("Write one sentence about the number {i}."))
        .collect();
    let stream_req = |p: &str| {
        let mut r = greedy_chat(p, 16);
        r["stream"] = json!(true);
        r
    };
    let text_of = |addr: &str, p: &str| -> String {
        let (st, _, body) = http(
            addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            stream_req(p).to_string().as_bytes(),
        );
        assert_eq!(st, 200);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    // Alone, one after another.
    let solo: Vec<String> = prompts.iter().map(|p| text_of(&s.addr, p)).collect();
    // All at once.
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| sc.spawn(|| text_of(&s.addr, p)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert_eq!(
            a, b,
            "request {i}: concurrent answer differs from its solo answer"
        );
    }
    // A client that disconnects mid-stream frees its slot.
    {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        let mut r = greedy_chat("Count from one to a thousand.", 400);
        r["stream"] = json!(true);
        let body = r.to_string();
        write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut first = [0u8; 256];
        let _ = c.read(&mut first).unwrap();
    } // dropped: the connection closes
    let busy = |addr: &str| -> String {
        let (_, _, b) = http(addr, "GET", "/metrics", &[], b"");
        String::from_utf8(b)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("torchless_slots_busy "))
            .unwrap()
            .to_string()
    };
    let mut freed = false;
    for _ in 0..50 {
        if busy(&s.addr) == "torchless_slots_busy 0" {
            freed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        freed,
        "slot still busy after the client left: {}",
        busy(&s.addr)
    );
}

/// The chat page in a real browser: headless Chromium from Debian's packages, driven by
/// Selenium (tests/chat_page.py); the screenshot stays in the test's output folder.
#[test]
fn the_chat_page_streams_an_answer_in_a_real_browser() {
    let s = serve(&[]);
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chat-page.png");
    let _ = std::fs::remove_file(&shot);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chat_page.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", s.addr))
        .arg(&shot)
        .arg("smollm2-135m-instruct-q4_1.gguf")
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(shot.is_file(), "no screenshot");
    eprintln!(
        "{}screenshot: {}",
        String::from_utf8_lossy(&o.stdout),
        shot.display()
    );
}

#[test]
fn a_model_that_fails_to_load_ends_the_server_with_the_reason() {
    let bad = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("not-a-model.gguf");
    std::fs::write(&bad, b"this is not a GGUF file").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["serve", bad.to_str().unwrap(), "--port", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not-a-model.gguf"), "{err}");
}

#[cfg(unix)]
#[test]
fn sigterm_lets_the_stream_in_flight_finish_and_exits_zero() {
    let mut s = serve(&[]);
    let addr = s.addr.clone();
    let mut r = greedy_chat("Tell me about the sea.", 24);
    r["stream"] = json!(true);
    let reader = std::thread::spawn(move || {
        let (st, _, body) = http(
            &addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            r.to_string().as_bytes(),
        );
        (st, String::from_utf8(body).unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let (st, body) = reader.join().unwrap();
    assert_eq!(st, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_client_that_never_reads_does_not_stall_the_others() {
    let s = serve(&["--parallel", "2"]);
    // A streaming request whose client never reads its answer.
    let mut stuck = TcpStream::connect(&s.addr).unwrap();
    let mut r = greedy_chat("Count slowly from one to five hundred.", 400);
    r["stream"] = json!(true);
    let body = r.to_string();
    write!(
        stuck,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Others are served meanwhile, promptly.
    let t0 = std::time::Instant::now();
    for i in 0..3 {
        let (st, v) = post(
            &s.addr,
            "/v1/chat/completions",
            &greedy_chat(&format!("Say {i}."), 8),
        );
        assert_eq!(st, 200, "{v}");
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    assert_eq!(http(&s.addr, "GET", "/health", &[], b"").0, 200);
    drop(stuck);
}

/// A chat template that runs away with memory fails its request (and later ones at once, not
/// parking another thread); the server goes on serving completions and health checks.
#[test]
fn a_runaway_chat_template_fails_its_request_and_the_server_goes_on() {
    let tf =
        std::env::temp_dir().join(format!("torchless-serve-bomb-{}.jinja", std::process::id()));
    std::fs::write(
        &tf,
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    )
    .unwrap();
    let s = serve(&["--chat-template-file", tf.to_str().unwrap()]);
    let (st, v) = post(&s.addr, "/v1/chat/completions", &greedy_chat("hi", 4));
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        (400..600).contains(&st) && msg.contains("template was stopped") && msg.contains("MiB"),
        "{st} {v}"
    );
    let (st2, v) = post(&s.addr, "/v1/chat/completions", &greedy_chat("hi", 4));
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(st2 == st && msg.contains("stopped earlier"), "{st2} {v}");
    let (st, v) = post(
        &s.addr,
        "/v1/completions",
        &json!({"prompt": "The sky is", "max_tokens": 3, "temperature": 0}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(http(&s.addr, "GET", "/health", &[], b"").0, 200);
    std::fs::remove_file(&tf).ok();
}

/// `serve --backend vulkan` (lavapipe in CI): the scheduler's slots on the GPU give the
/// same greedy answer as `torchless run` on the GPU.
#[test]
fn serve_on_the_gpu_answers_as_run_on_the_gpu() {
    let s = serve(&["--backend", "vulkan"]);
    let (st, v) = post(
        &s.addr,
        "/v1/chat/completions",
        &greedy_chat("Why is the sky blue?", 8),
    );
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let model = real_model("smollm2-135m-instruct-q4_1");
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "run",
            model.to_str().unwrap(),
            "-p",
            "Why is the sky blue?",
            "-n",
            "8",
            "--temp",
            "0",
            "-q",
            "--backend",
            "vulkan",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        text.trim_end()
    );
}

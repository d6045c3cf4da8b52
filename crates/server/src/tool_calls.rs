//! The model's tool calls in its answer, split from the text as it streams and shaped as
//! OpenAI `tool_calls`, whole or as stream deltas. Two syntaxes: Hermes/Qwen
//! `<tool_call>{"name": .., "arguments": ..}</tool_call>` blocks (also what the tools system
//! prompt asks for), Llama 3.x's answer that is one bare `{"name": .., "parameters": ..}`,
//! and Mistral's `[TOOL_CALLS]` followed by a JSON list of `{"name": .., "arguments": ..}`
//! (`[TOOL_CALLS]` is a control token: the worker puts its text into the answer, see
//! [`MISTRAL_MARKER`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
/// The control token that opens Mistral's calls; a control token's text is not part of the
/// decoded answer, so the worker adds it where the token was generated.
pub const MISTRAL_MARKER: &str = "[TOOL_CALLS]";

/// Output of [`CallParser`]: answer text, or a complete call.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Call {
        name: String,
        arguments: String,
    },
    /// Incremental parsing: a call's name is known, its arguments follow as `CallArgs`.
    CallStart {
        name: String,
    },
    CallArgs(String),
}

/// How a model writes its calls, as its chat template teaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Hermes,
    /// Llama 3.1+: the whole answer is one JSON call (after `<|python_tag|>`, a control token
    /// the answer text does not show).
    Llama3Json,
    /// Mistral (v0.3-style templates): `[TOOL_CALLS]` then a JSON list of calls.
    Mistral,
}

impl Syntax {
    pub fn of_template(template: Option<&str>) -> Syntax {
        match template {
            Some(t) if t.contains(MISTRAL_MARKER) => Syntax::Mistral,
            Some(t)
                if t.contains("<|python_tag|>")
                    || t.contains("respond with a JSON for a function call") =>
            {
                Syntax::Llama3Json
            }
            _ => Syntax::Hermes,
        }
    }
}

/// Splits streamed answer text into text and tool calls. Hermes: text that may begin a
/// `<tool_call>` tag is held back until it is clear; a call is released once its closing tag
/// (or the end of the answer) arrives and its JSON parses, otherwise it stays text. Llama 3:
/// an answer whose first non-blank character is `{` is held to the end, then is a call if it
/// parses as one; any other answer streams as text.
pub struct CallParser {
    syntax: Syntax,
    buf: String,
    in_call: bool,
    /// Llama 3: the answer was seen not to be a call.
    plain: bool,
    /// Streaming: release a Hermes call's arguments as they are written, once the call's
    /// header (`{"name": "..", "arguments": `) has been seen.
    incremental: bool,
    /// Inside a call whose arguments are being streamed.
    args_open: bool,
    /// Whitespace held back: shown only if more text follows (not between or after calls).
    blank: String,
    pub calls: usize,
}

fn parse_call(body: &str) -> Option<Piece> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let name = v["name"].as_str()?.to_string();
    let args = if v["arguments"].is_null() {
        &v["parameters"]
    } else {
        &v["arguments"]
    };
    let arguments = match args {
        Value::Null => "{}".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(Piece::Call { name, arguments })
}

impl CallParser {
    pub fn new(syntax: Syntax) -> CallParser {
        CallParser {
            syntax,
            buf: String::new(),
            in_call: false,
            plain: false,
            incremental: false,
            args_open: false,
            blank: String::new(),
            calls: 0,
        }
    }

    /// A parser for a stream: arguments are released piece by piece (the answer's shape as
    /// the grammar of a required call writes it: name first). A call written otherwise is
    /// released whole when it closes.
    pub fn streaming(syntax: Syntax) -> CallParser {
        CallParser {
            incremental: true,
            ..CallParser::new(syntax)
        }
    }

    /// Inside a call: streams its arguments once the header is seen. `true` when the
    /// buffer was handled (continue the loop), `false` to fall back to whole calls.
    fn stream_args(&mut self, out: &mut Vec<Piece>) -> Option<bool> {
        if !self.args_open {
            let (name, used) = call_header(&self.buf)?;
            self.buf.drain(..used);
            self.blank.clear();
            self.calls += 1;
            self.args_open = true;
            out.push(Piece::CallStart { name });
            return Some(true);
        }
        if let Some(end) = self.buf.find(CLOSE) {
            let body: String = self.buf.drain(..end + CLOSE.len()).collect();
            self.push_args(out, &body[..end], true);
            self.in_call = false;
            self.args_open = false;
            return Some(true);
        }
        // Hold back what may be the object's closing brace and the start of the close tag.
        let mut keep = (CLOSE.len() + 8).min(self.buf.len());
        while !self.buf.is_char_boundary(self.buf.len() - keep) {
            keep += 1;
        }
        let cut = self.buf.len() - keep;
        let t: String = self.buf.drain(..cut).collect();
        self.push_args(out, &t, false);
        Some(false)
    }

    /// Arguments text; at the end of the call, without the `}` closing the call object.
    fn push_args(&mut self, out: &mut Vec<Piece>, t: &str, last: bool) {
        let t = if last {
            let t = t.trim_end();
            t.strip_suffix('}').unwrap_or(t).trim_end()
        } else {
            t
        };
        if !t.is_empty() {
            out.push(Piece::CallArgs(t.to_string()));
        }
    }

    /// Mistral: an answer that opens with the marker is held to the end (then parsed as a
    /// list of calls); any other answer streams as text.
    fn push_mistral(&mut self, text: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.plain {
            self.text(&mut out, text);
            return out;
        }
        self.buf.push_str(text);
        let head = self.buf.trim_start();
        let undecided = head.len() < MISTRAL_MARKER.len() && MISTRAL_MARKER.starts_with(head);
        if !undecided && !head.starts_with(MISTRAL_MARKER) {
            self.plain = true;
            let t = std::mem::take(&mut self.buf);
            self.text(&mut out, &t);
        }
        out
    }

    /// The calls after Mistral's marker: a JSON list (or one object) of calls.
    fn mistral_calls(&mut self, out: &mut Vec<Piece>, rest: &str) {
        let body = rest
            .trim_start()
            .strip_prefix(MISTRAL_MARKER)
            .unwrap_or(rest);
        let parsed: Option<Vec<Piece>> = match serde_json::from_str::<Value>(body.trim()) {
            Ok(Value::Array(calls)) if !calls.is_empty() => {
                calls.iter().map(|c| parse_call(&c.to_string())).collect()
            }
            Ok(v @ Value::Object(_)) => parse_call(&v.to_string()).map(|c| vec![c]),
            _ => None,
        };
        match parsed {
            Some(calls) => {
                self.blank.clear();
                self.calls += calls.len();
                out.extend(calls);
            }
            None => self.text(out, body),
        }
    }

    fn push_llama3(&mut self, text: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.plain {
            self.text(&mut out, text);
            return out;
        }
        self.buf.push_str(text);
        match self.buf.trim_start().chars().next() {
            None | Some('{') => {}
            Some(_) => {
                self.plain = true;
                let t = std::mem::take(&mut self.buf);
                self.text(&mut out, &t);
            }
        }
        out
    }

    fn text(&mut self, out: &mut Vec<Piece>, t: &str) {
        if t.trim().is_empty() {
            self.blank.push_str(t);
            return;
        }
        let mut s = std::mem::take(&mut self.blank);
        s.push_str(t);
        out.push(Piece::Text(s));
    }

    fn call(&mut self, out: &mut Vec<Piece>, body: &str) {
        match parse_call(body) {
            Some(c) => {
                self.blank.clear();
                self.calls += 1;
                out.push(c);
            }
            None => self.text(out, &format!("{OPEN}{body}{CLOSE}")),
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        match self.syntax {
            Syntax::Llama3Json => return self.push_llama3(text),
            Syntax::Mistral => return self.push_mistral(text),
            Syntax::Hermes => {}
        }
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.in_call && self.incremental {
                match self.stream_args(&mut out) {
                    Some(true) => continue,
                    Some(false) => break,
                    None if self.args_open => break,
                    None => {}
                }
            }
            if self.in_call {
                let Some(end) = self.buf.find(CLOSE) else {
                    break;
                };
                let body = self.buf[..end].to_string();
                self.buf.drain(..end + CLOSE.len());
                self.in_call = false;
                self.call(&mut out, &body);
            } else if let Some(start) = self.buf.find(OPEN) {
                let before = self.buf[..start].to_string();
                self.buf.drain(..start + OPEN.len());
                self.in_call = true;
                self.text(&mut out, &before);
            } else {
                // Keep a tail that could still grow into "<tool_call>".
                let keep = (1..OPEN.len())
                    .rev()
                    .find(|&n| self.buf.ends_with(&OPEN[..n]))
                    .unwrap_or(0);
                let cut = self.buf.len() - keep;
                if cut > 0 {
                    let t = self.buf[..cut].to_string();
                    self.buf.drain(..cut);
                    self.text(&mut out, &t);
                }
                break;
            }
        }
        out
    }

    /// The end of the answer: an unclosed call counts if its JSON is complete.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        if self.args_open {
            self.args_open = false;
            self.in_call = false;
            self.push_args(&mut out, &rest, true);
        } else if self.syntax == Syntax::Mistral && !self.plain && !rest.trim().is_empty() {
            self.mistral_calls(&mut out, &rest);
        } else if self.syntax == Syntax::Llama3Json && !rest.trim().is_empty() {
            match parse_call(&rest) {
                Some(c) => {
                    self.calls += 1;
                    out.push(c);
                }
                None => self.text(&mut out, &rest),
            }
        } else if self.in_call {
            self.in_call = false;
            match parse_call(&rest) {
                Some(c) => {
                    self.calls += 1;
                    out.push(c);
                }
                None => self.text(&mut out, &format!("{OPEN}{rest}")),
            }
        } else if !rest.is_empty() {
            self.text(&mut out, &rest);
        }
        out
    }
}

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

fn call_id() -> String {
    format!("call_{}", NEXT_CALL.fetch_add(1, Ordering::Relaxed))
}

/// The assistant message of a whole answer; with tools, `<tool_call>` blocks become
/// `tool_calls` (content null when nothing else was said). Returns whether calls were made.
pub fn chat_message(content: String, tools: Option<Syntax>) -> (Value, bool) {
    let Some(syntax) = tools else {
        return (json!({"role": "assistant", "content": content}), false);
    };
    let mut parser = CallParser::new(syntax);
    let mut pieces = parser.push(&content);
    pieces.extend(parser.finish());
    let (mut text, mut calls) = (String::new(), Vec::new());
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::CallStart { .. } | Piece::CallArgs(_) => {}
            Piece::Call { name, arguments } => calls.push(json!({
                "id": call_id(),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
        }
    }
    if calls.is_empty() {
        return (json!({"role": "assistant", "content": text}), false);
    }
    let text = text.trim();
    let content = if text.is_empty() {
        Value::Null
    } else {
        Value::from(text)
    };
    let message = json!({"role": "assistant", "content": content, "tool_calls": calls});
    (message, true)
}

/// `{"name": "NAME", "arguments": ` at the start of `buf` (whitespace allowed between
/// tokens): the name and the bytes it takes; `None` while incomplete or when written otherwise.
fn call_header(buf: &str) -> Option<(String, usize)> {
    let mut rest = buf.trim_start();
    let expect = |lit: &str, r: &mut &str| -> Option<()> {
        *r = r.strip_prefix(lit)?.trim_start();
        Some(())
    };
    expect("{", &mut rest)?;
    expect("\"name\"", &mut rest)?;
    expect(":", &mut rest)?;
    let body = rest.strip_prefix('"')?;
    let close = body.find('"')?;
    let name = &body[..close];
    if name.contains('\\') || name.is_empty() {
        return None;
    }
    rest = body[close + 1..].trim_start();
    expect(",", &mut rest)?;
    expect("\"arguments\"", &mut rest)?;
    let after_colon = rest.strip_prefix(':')?;
    let args = after_colon.trim_start();
    // The arguments' first character must have arrived, or the header may still grow.
    if args.is_empty() {
        return None;
    }
    Some((name.to_string(), buf.len() - args.len()))
}

/// Stream deltas of one parsed piece: text as `content`; a call as a first delta with its
/// index, id and name, then one with its arguments.
pub fn tool_deltas(piece: Piece, index: usize) -> Vec<Value> {
    match piece {
        Piece::Text(t) => vec![json!({"content": t})],
        Piece::CallStart { name } => vec![
            json!({"tool_calls": [{"index": index, "id": call_id(), "type": "function", "function": {"name": name, "arguments": ""}}]}),
        ],
        Piece::CallArgs(a) => {
            vec![json!({"tool_calls": [{"index": index, "function": {"arguments": a}}]})]
        }
        Piece::Call { name, arguments } => vec![
            json!({"tool_calls": [{"index": index, "id": call_id(), "type": "function", "function": {"name": name, "arguments": ""}}]}),
            json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> Vec<Piece> {
        let mut p = CallParser::new(Syntax::Hermes);
        let mut out: Vec<Piece> = chunks.iter().flat_map(|c| p.push(c)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn calls_split_from_text_across_chunk_boundaries() {
        let call = |n: &str, a: &str| Piece::Call {
            name: n.into(),
            arguments: a.into(),
        };
        assert_eq!(
            run(&[
                "Sure.\n<tool",
                "_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_",
                "call>\n<tool_call>{\"name\":\"g\",\"arguments\":{}}"
            ]),
            vec![
                Piece::Text("Sure.\n".into()),
                call("f", "{\"x\":1}"),
                call("g", "{}")
            ]
        );
        assert_eq!(
            run(&["a < b", " <tool"]),
            vec![Piece::Text("a < b".into()), Piece::Text(" <tool".into())]
        );
        assert_eq!(
            run(&["<tool_call>not json</tool_call>"]),
            vec![Piece::Text("<tool_call>not json</tool_call>".into())]
        );
    }

    #[test]
    fn llama3_answers_are_one_bare_json_call_or_text() {
        let mut p = CallParser::new(Syntax::Llama3Json);
        let mut out = p.push(" {\"name\": \"f\", ");
        assert!(out.is_empty());
        out.extend(p.push("\"parameters\": {\"a\": 1}}"));
        out.extend(p.finish());
        let call = Piece::Call {
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        };
        assert_eq!(out, vec![call]);
        let mut p = CallParser::new(Syntax::Llama3Json);
        let mut out = p.push("It is {sunny}");
        out.extend(p.finish());
        assert_eq!(out, vec![Piece::Text("It is {sunny}".into())]);
        let t = "Given the following functions, please respond with a JSON for a function call";
        assert_eq!(Syntax::of_template(Some(t)), Syntax::Llama3Json);
        assert_eq!(Syntax::of_template(None), Syntax::Hermes);
    }

    #[test]
    fn streaming_releases_arguments_as_written() {
        let mut p = CallParser::streaming(Syntax::Hermes);
        let mut out = Vec::new();
        let text = "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris, the capital of France\", \"n\": 1}}\n</tool_call>";
        for ch in text.as_bytes().chunks(3) {
            out.extend(p.push(std::str::from_utf8(ch).unwrap()));
        }
        out.extend(p.finish());
        assert_eq!(out[0], Piece::CallStart { name: "get".into() });
        let args: String = out[1..]
            .iter()
            .map(|p| match p {
                Piece::CallArgs(a) => a.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(out.len() > 2, "arguments arrive in pieces: {out:?}");
        assert_eq!(
            args,
            "{\"city\": \"Paris, the capital of France\", \"n\": 1}"
        );
        assert_eq!(p.calls, 1);
    }

    #[test]
    fn mistral_calls_follow_the_marker() {
        let t = "{% for m in messages %}[TOOL_CALLS] {{ m }}{% endfor %}";
        assert_eq!(Syntax::of_template(Some(t)), Syntax::Mistral);
        let mut p = CallParser::new(Syntax::Mistral);
        let mut pieces = Vec::new();
        for chunk in [
            "[TOOL_",
            "CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}},",
            " {\"name\": \"now\", \"arguments\": {}}]",
        ] {
            pieces.extend(p.push(chunk));
        }
        assert!(pieces.is_empty(), "held until the end: {pieces:?}");
        pieces.extend(p.finish());
        assert_eq!(
            pieces,
            vec![
                Piece::Call {
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into()
                },
                Piece::Call {
                    name: "now".into(),
                    arguments: "{}".into()
                },
            ]
        );
        assert_eq!(p.calls, 2);
        // Text that does not open with the marker streams as text at once.
        let mut p = CallParser::new(Syntax::Mistral);
        assert_eq!(
            p.push("The weather"),
            vec![Piece::Text("The weather".into())]
        );
        // A marker followed by something that is not a call list stays text.
        let mut p = CallParser::new(Syntax::Mistral);
        let mut pieces = p.push("[TOOL_CALLS] oops");
        pieces.extend(p.finish());
        assert_eq!(pieces, vec![Piece::Text(" oops".into())]);
    }
}

//! The model's tool calls in its answer: `<tool_call>{"name": .., "arguments": ..}</tool_call>`
//! blocks (the Hermes/Qwen syntax, also what the tools system prompt asks for) split from the
//! text as it streams, and shaped as OpenAI `tool_calls`, whole or as stream deltas.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Output of [`CallParser`]: answer text, or a complete call.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Call { name: String, arguments: String },
}

/// Splits streamed answer text into text and tool calls. Text that may begin a `<tool_call>`
/// tag is held back until it is clear; a call is released once its closing tag (or the end
/// of the answer) arrives and its JSON parses, otherwise it stays text.
#[derive(Default)]
pub struct CallParser {
    buf: String,
    in_call: bool,
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
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
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
        if self.in_call {
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
pub fn chat_message(content: String, tools: bool) -> (Value, bool) {
    if !tools {
        return (json!({"role": "assistant", "content": content}), false);
    }
    let mut parser = CallParser::default();
    let mut pieces = parser.push(&content);
    pieces.extend(parser.finish());
    let (mut text, mut calls) = (String::new(), Vec::new());
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
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

/// Stream deltas of one parsed piece: text as `content`; a call as a first delta with its
/// index, id and name, then one with its arguments.
pub fn tool_deltas(piece: Piece, index: usize) -> Vec<Value> {
    match piece {
        Piece::Text(t) => vec![json!({"content": t})],
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
        let mut p = CallParser::default();
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
}

//! Separating a reasoning model's trace (`<think>…</think>`) from its answer while tokens stream.
//!
//! Reasoning models (DeepSeek-R1 distills, QwQ, Qwen3) write their chain of thought between two
//! markers that are single tokens of their vocabulary. The splitter recognises the markers both
//! by token id and as text (a model whose markers are not tokens, or that spells one out piece by
//! piece), so a marker split across streamed pieces is never shown half.

use crate::text::longest_suffix_prefix;

/// The two markers of a reasoning trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkingTags {
    pub open: String,
    pub close: String,
    /// Token ids of the markers when the vocabulary has them as single tokens.
    pub open_id: Option<u32>,
    pub close_id: Option<u32>,
}

impl ThinkingTags {
    /// `<think>` / `</think>` (or `<thinking>` / `</thinking>`) when the vocabulary has both as
    /// single tokens: the signature of a reasoning model. `None` for other models.
    pub fn from_vocab(tok: &tokenizer::Tokenizer) -> Option<Self> {
        let (open_id, close_id) = tok.thinking_tags()?;
        Some(ThinkingTags {
            open: tok.token_text(open_id).ok()?.to_string(),
            close: tok.token_text(close_id).ok()?.to_string(),
            open_id: Some(open_id),
            close_id: Some(close_id),
        })
    }

    /// Markers recognised as text only (no token ids).
    pub fn text(open: &str, close: &str) -> Self {
        ThinkingTags {
            open: open.into(),
            close: close.into(),
            open_id: None,
            close_id: None,
        }
    }

    /// True when a rendered prompt leaves the model inside a trace: templates that pre-open the
    /// trace end the generation prompt with the open marker (whitespace after it aside), so
    /// the output starts with reasoning and contains only the close marker.
    pub fn prompt_opens_trace(&self, prompt: &str) -> bool {
        let last_open = prompt.rfind(&self.open);
        let last_close = prompt.rfind(&self.close);
        match (last_open, last_close) {
            (Some(o), None) => prompt[o + self.open.len()..].trim().is_empty(),
            (Some(o), Some(c)) if c < o => prompt[o + self.open.len()..].trim().is_empty(),
            _ => false,
        }
    }
}

/// A run of output text, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Reasoning(String),
    Answer(String),
}

/// Feeds on (token id, released text) pairs — [`crate::TokenEvent`]'s `id` and `text` — and
/// hands back the text as reasoning or answer, markers removed. Whitespace right after a marker
/// is dropped (models put a newline or two there), so each part starts with its first word.
#[derive(Debug, Clone)]
pub struct ThinkingSplitter {
    tags: ThinkingTags,
    inside: bool,
    /// Text that may be the beginning of the marker being looked for.
    held: String,
    /// Drop leading whitespace of the current part (set after each marker).
    trim_start: bool,
    opened: bool,
    closed: bool,
    reasoning: String,
    answer: String,
}

impl ThinkingSplitter {
    /// `start_inside`: the prompt already opened the trace (see
    /// [`ThinkingTags::prompt_opens_trace`]).
    pub fn new(tags: ThinkingTags, start_inside: bool) -> Self {
        ThinkingSplitter {
            tags,
            inside: start_inside,
            held: String::new(),
            trim_start: start_inside,
            opened: start_inside,
            closed: false,
            reasoning: String::new(),
            answer: String::new(),
        }
    }

    /// Splitter for the output that follows `prompt`.
    pub fn for_prompt(tags: ThinkingTags, prompt: &str) -> Self {
        let inside = tags.prompt_opens_trace(prompt);
        Self::new(tags, inside)
    }

    /// True while the model is writing its trace.
    pub fn in_reasoning(&self) -> bool {
        self.inside
    }

    /// A trace was opened (in the output or by the prompt).
    pub fn saw_reasoning(&self) -> bool {
        self.opened
    }

    /// The trace was opened but its close marker has not come (yet).
    pub fn unclosed(&self) -> bool {
        self.opened && !self.closed
    }

    /// Everything classified as reasoning so far.
    pub fn reasoning(&self) -> &str {
        &self.reasoning
    }

    /// Everything classified as answer so far.
    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// Classifies one generated token and the text it released.
    pub fn push(&mut self, id: u32, text: &str) -> Vec<Segment> {
        let mut out = Vec::new();
        let marker_token = if Some(id) == self.tags.open_id {
            Some(true)
        } else if Some(id) == self.tags.close_id {
            Some(false)
        } else {
            None
        };
        match marker_token {
            Some(open) => {
                // The marker token's own text (absent when it renders as nothing) is the tag;
                // what precedes it was held back by the decoder and belongs to the old part.
                let tag = if open {
                    &self.tags.open
                } else {
                    &self.tags.close
                };
                let (before, after) = match text.rfind(tag.as_str()) {
                    Some(p) => (&text[..p], &text[p + tag.len()..]),
                    None => (text, ""),
                };
                self.scan(before, &mut out);
                self.flush_held(&mut out);
                self.switch(open);
                self.scan(after, &mut out);
            }
            None => self.scan(text, &mut out),
        }
        out
    }

    /// End of the output: releases held text (a marker that never completed is shown as the
    /// text it was).
    pub fn finish(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        self.flush_held(&mut out);
        out
    }

    fn switch(&mut self, open: bool) {
        if open {
            self.opened = true;
        } else {
            self.closed = true;
        }
        self.inside = open;
        self.trim_start = true;
    }

    /// Text-level marker search. Inside a trace only the close marker matters; outside, both:
    /// a stray close marker (trace opened by a prompt we could not see) is still removed.
    fn scan(&mut self, text: &str, out: &mut Vec<Segment>) {
        self.held.push_str(text);
        loop {
            let open_at = (!self.inside)
                .then(|| self.held.find(&self.tags.open))
                .flatten();
            let close_at = self.held.find(&self.tags.close);
            let hit = match (open_at, close_at) {
                (Some(o), Some(c)) if c < o => Some((c, false)),
                (Some(o), _) => Some((o, true)),
                (None, Some(c)) => Some((c, false)),
                (None, None) => None,
            };
            let Some((at, open)) = hit else { break };
            let len = if open {
                self.tags.open.len()
            } else {
                self.tags.close.len()
            };
            let before = self.held[..at].to_string();
            self.held.drain(..at + len);
            self.emit(before, out);
            self.switch(open);
        }
        let mut keep = longest_suffix_prefix(&self.held, &self.tags.close);
        if !self.inside {
            keep = keep.max(longest_suffix_prefix(&self.held, &self.tags.open));
        }
        let cut = self.held.len() - keep;
        let now: String = self.held.drain(..cut).collect();
        self.emit(now, out);
    }

    fn flush_held(&mut self, out: &mut Vec<Segment>) {
        let rest = std::mem::take(&mut self.held);
        self.emit(rest, out);
    }

    fn emit(&mut self, mut text: String, out: &mut Vec<Segment>) {
        if self.trim_start {
            let t = text.trim_start();
            if t.is_empty() {
                return;
            }
            text = t.to_string();
            self.trim_start = false;
        }
        if text.is_empty() {
            return;
        }
        if self.inside {
            self.reasoning.push_str(&text);
            match out.last_mut() {
                Some(Segment::Reasoning(s)) => s.push_str(&text),
                _ => out.push(Segment::Reasoning(text)),
            }
        } else {
            self.answer.push_str(&text);
            match out.last_mut() {
                Some(Segment::Answer(s)) => s.push_str(&text),
                _ => out.push(Segment::Answer(text)),
            }
        }
    }
}

#[cfg(test)]
#[path = "thinking_tests.rs"]
mod tests;

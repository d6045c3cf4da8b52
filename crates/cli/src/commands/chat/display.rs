//! How one streamed answer appears: the reasoning trace hidden behind a small indicator or
//! shown dimmed, the answer as plain text. Writes to any `Write` so tests can drive it with
//! forced token streams.

use std::io::{self, Write};

use engine::{Segment, ThinkingSplitter};

const FAINT: &str = "\x1b[2m";
const NORMAL: &str = "\x1b[22m";
/// Back to the start of the line and erase it (removes the indicator).
const ERASE_LINE: &str = "\r\x1b[K";

/// Terminal abilities of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI escapes allowed (a terminal, `NO_COLOR` unset).
    pub color: bool,
    /// Show a "thinking…" indicator while a hidden trace is written (a terminal only).
    pub indicator: bool,
}

impl Style {
    pub const PLAIN: Style = Style {
        color: false,
        indicator: false,
    };

    /// What a stream that is (or is not) a terminal supports, honouring `NO_COLOR`.
    pub fn detect(is_tty: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: is_tty && !no_color,
            indicator: is_tty,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Nothing,
    Reasoning,
    Answer,
}

/// The parts of a finished answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    pub answer: String,
    /// The trace, when the model wrote one.
    pub reasoning: Option<String>,
    /// The trace was still open when generation ended.
    pub unclosed: bool,
}

/// Renders one answer as its tokens arrive.
pub struct AnswerDisplay<W: Write> {
    out: W,
    style: Style,
    show_thinking: bool,
    splitter: Option<ThinkingSplitter>,
    plain_answer: String,
    shown: Shown,
    /// Reasoning whitespace not printed yet: trailing whitespace before `</think>` would only
    /// add blank lines.
    pending_ws: String,
    indicator_on: bool,
    thinking_tokens: usize,
}

impl<W: Write> AnswerDisplay<W> {
    /// `splitter`: `None` for models without reasoning markers (everything is answer).
    pub fn new(
        out: W,
        style: Style,
        show_thinking: bool,
        splitter: Option<ThinkingSplitter>,
    ) -> Self {
        AnswerDisplay {
            out,
            style,
            show_thinking,
            splitter,
            plain_answer: String::new(),
            shown: Shown::Nothing,
            pending_ws: String::new(),
            indicator_on: false,
            thinking_tokens: 0,
        }
    }

    /// One generated token and the text it released.
    pub fn token(&mut self, id: u32, text: &str) -> io::Result<()> {
        let Some(sp) = self.splitter.as_mut() else {
            self.plain_answer.push_str(text);
            self.out.write_all(text.as_bytes())?;
            self.shown = Shown::Answer;
            return self.out.flush();
        };
        let was_reasoning = sp.in_reasoning();
        let segs = sp.push(id, text);
        let thinking = was_reasoning || sp.in_reasoning();
        for s in segs {
            self.segment(s)?;
        }
        if thinking && !self.show_thinking {
            self.thinking_tokens += 1;
            if self.style.indicator && self.shown != Shown::Answer {
                self.draw_indicator()?;
            }
        }
        self.out.flush()
    }

    /// End of the answer; returns its parts.
    pub fn finish(mut self) -> io::Result<Finished> {
        let Some(mut sp) = self.splitter.take() else {
            return Ok(Finished {
                answer: self.plain_answer,
                reasoning: None,
                unclosed: false,
            });
        };
        for s in sp.finish() {
            self.segment(s)?;
        }
        self.clear_indicator()?;
        if self.shown == Shown::Reasoning {
            self.end_reasoning(false)?;
        }
        if sp.unclosed() && !self.show_thinking {
            let note = format!(
                "(the reasoning did not finish: {} tokens hidden; /thinking on shows it)",
                self.thinking_tokens
            );
            self.write_faint(&note)?;
        }
        self.out.flush()?;
        let reasoning = sp
            .saw_reasoning()
            .then(|| sp.reasoning().trim().to_string());
        Ok(Finished {
            answer: sp.answer().to_string(),
            reasoning,
            unclosed: sp.unclosed(),
        })
    }

    fn segment(&mut self, s: Segment) -> io::Result<()> {
        match s {
            Segment::Reasoning(t) => {
                if !self.show_thinking {
                    return Ok(());
                }
                if self.shown != Shown::Reasoning {
                    self.clear_indicator()?;
                    if self.shown == Shown::Answer {
                        self.out.write_all(b"\n\n")?;
                    }
                    self.out.write_all(if self.style.color {
                        FAINT.as_bytes()
                    } else {
                        b"<think>\n"
                    })?;
                    self.shown = Shown::Reasoning;
                }
                let body = t.trim_end();
                if !body.is_empty() {
                    let ws = std::mem::take(&mut self.pending_ws);
                    self.out.write_all(ws.as_bytes())?;
                    self.out.write_all(body.as_bytes())?;
                }
                self.pending_ws.push_str(&t[body.len()..]);
            }
            Segment::Answer(t) => {
                self.clear_indicator()?;
                if self.shown == Shown::Reasoning {
                    self.end_reasoning(true)?;
                }
                self.out.write_all(t.as_bytes())?;
                self.shown = Shown::Answer;
            }
        }
        Ok(())
    }

    /// Closes a shown trace; `more` when the answer follows.
    fn end_reasoning(&mut self, more: bool) -> io::Result<()> {
        self.pending_ws.clear();
        let tail: &[u8] = match (self.style.color, more) {
            (true, true) => b"\x1b[22m\n\n",
            (true, false) => NORMAL.as_bytes(),
            (false, true) => b"\n</think>\n\n",
            (false, false) => b"\n</think>",
        };
        self.out.write_all(tail)?;
        self.shown = Shown::Nothing;
        Ok(())
    }

    fn draw_indicator(&mut self) -> io::Result<()> {
        let text = format!("thinking… {} tokens", self.thinking_tokens);
        let body = if self.style.color {
            format!("{ERASE_LINE}{FAINT}{text}{NORMAL}")
        } else {
            format!("{ERASE_LINE}{text}")
        };
        self.out.write_all(body.as_bytes())?;
        self.indicator_on = true;
        Ok(())
    }

    fn clear_indicator(&mut self) -> io::Result<()> {
        if self.indicator_on {
            self.out.write_all(ERASE_LINE.as_bytes())?;
            self.indicator_on = false;
        }
        Ok(())
    }

    fn write_faint(&mut self, text: &str) -> io::Result<()> {
        if self.style.color {
            write!(self.out, "{FAINT}{text}{NORMAL}")
        } else {
            self.out.write_all(text.as_bytes())
        }
    }
}

#[cfg(test)]
#[path = "display_tests.rs"]
mod tests;

//! Turning token pieces into user-visible text: UTF-8 reassembly across tokens and stop strings
//! that may straddle token boundaries.

/// Collects raw piece bytes and releases only complete UTF-8 characters, so a multi-byte
/// character split over two tokens is never printed as two replacement characters.
#[derive(Debug, Default, Clone)]
pub struct Utf8Assembler {
    buf: Vec<u8>,
}

impl Utf8Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes`; returns the text that is now complete. Bytes that can never become
    /// valid UTF-8 are released as U+FFFD rather than blocking the stream.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.buf.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.buf[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.buf.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // Safe: from_utf8 vouched for this range.
                    out.push_str(std::str::from_utf8(&self.buf[start..valid]).unwrap_or(""));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            start = valid + n;
                        }
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.buf.drain(..start);
        out
    }

    /// Releases whatever is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        s
    }
}

/// Watches the generated text for user stop strings. Text that could still be the start of a
/// stop string is held back until it either completes one (then it is dropped) or cannot
/// anymore (then it is released).
#[derive(Debug, Default, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What one chunk of text did to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCheck {
    /// Text safe to show now.
    pub emit: String,
    /// A stop string was completed; nothing after it should be shown.
    pub stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new<S: AsRef<str>>(stops: &[S]) -> Self {
        StopMatcher {
            stops: stops
                .iter()
                .map(|s| s.as_ref().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = first {
            let emit = self.held[..pos].to_string();
            self.held.clear();
            return StopCheck {
                emit,
                stopped: true,
            };
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopCheck {
            emit,
            stopped: false,
        }
    }

    /// Releases held text at the end of generation (no stop string can complete anymore).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with.
pub(crate) fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(m: &mut StopMatcher, pieces: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for p in pieces {
            let c = m.push(p);
            out.push_str(&c.emit);
            if c.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_inside_one_piece() {
        let mut m = StopMatcher::new(&["END"]);
        assert_eq!(
            feed(&mut m, &["hello", " wENDorld"]),
            ("hello w".into(), true)
        );
    }

    #[test]
    fn stop_across_pieces_is_held_then_dropped() {
        let mut m = StopMatcher::new(&["\n\nUser:"]);
        let c = m.push("Sure.\n");
        assert_eq!(c.emit, "Sure.");
        let c = m.push("\nUs");
        assert_eq!(c.emit, "");
        let c = m.push("er: hi");
        assert_eq!(
            c,
            StopCheck {
                emit: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn held_text_released_when_not_a_stop() {
        let mut m = StopMatcher::new(&["</s>"]);
        let c = m.push("a <");
        assert_eq!(c.emit, "a ");
        let c = m.push("/b>");
        assert_eq!(c.emit, "</b>");
        let c = m.push("x </");
        assert_eq!(c.emit, "x ");
        assert_eq!(m.finish(), "</");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(&["world", "lo w", ""]);
        assert_eq!(feed(&mut m, &["hel", "lo world"]), ("hel".into(), true));
    }

    #[test]
    fn no_stops_passes_everything() {
        let mut m = StopMatcher::new::<&str>(&[]);
        assert_eq!(feed(&mut m, &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_stop_prefixes_respect_char_boundaries() {
        let mut m = StopMatcher::new(&["é!"]);
        let c = m.push("café");
        assert_eq!(c.emit, "caf");
        let c = m.push("?");
        assert_eq!(c.emit, "é?");
    }

    #[test]
    fn utf8_split_across_tokens() {
        let mut a = Utf8Assembler::new();
        let bytes = "é😀".as_bytes();
        assert_eq!(a.push(&bytes[..1]), "");
        assert_eq!(a.push(&bytes[1..3]), "é");
        assert_eq!(a.push(&bytes[3..5]), "");
        assert_eq!(a.push(&bytes[5..]), "😀");
        assert_eq!(a.finish(), "");
    }

    #[test]
    fn utf8_invalid_bytes_become_replacement() {
        let mut a = Utf8Assembler::new();
        assert_eq!(a.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(a.push(&[0xE2, 0x82]), "");
        assert_eq!(a.finish(), "\u{FFFD}");
    }
}

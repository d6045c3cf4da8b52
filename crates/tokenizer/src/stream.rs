//! Incremental detokenization for streaming output.

use crate::{Result, Tokenizer};

/// Turns token ids into text one at a time, holding back bytes of a UTF-8
/// character that is split across tokens until it is complete.
///
/// It does not borrow the tokenizer, so it can live next to it in a session.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    show_special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// `show_special`: render control tokens such as `<|im_end|>` (else they give no text).
    pub fn new(show_special: bool) -> Self {
        StreamDecoder {
            show_special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text that became complete (maybe empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        let piece = tokenizer.piece(id, self.show_special)?;
        Ok(self.push_bytes(piece))
    }

    /// Adds raw bytes; returns the text that became complete (maybe empty).
    /// Bytes that can never become valid UTF-8 are emitted as U+FFFD.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// True while bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: held-back bytes are returned as U+FFFD replacement text.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_split_characters() {
        let mut d = StreamDecoder::new(false);
        let rocket = "🚀".as_bytes();
        assert_eq!(d.push_bytes(b" a"), " a");
        assert_eq!(d.push_bytes(&rocket[..1]), "");
        assert_eq!(d.push_bytes(&rocket[1..3]), "");
        assert!(d.has_pending());
        assert_eq!(d.push_bytes(&[rocket[3], b'!']), "🚀!");
        assert!(!d.has_pending());
        assert_eq!(d.push_bytes(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(d.push_bytes(&rocket[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}

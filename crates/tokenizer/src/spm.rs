//! SentencePiece-style BPE as llama.cpp runs it: greedily merge the adjacent
//! pair whose concatenation is the highest-scoring token, then emit byte
//! tokens (`<0xNN>`) for any symbol that is not a token.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::TokenizerError;

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

pub(crate) struct SpmVocab<'a> {
    pub token_to_id: &'a HashMap<String, u32>,
    pub scores: &'a [f32],
}

impl SpmVocab<'_> {
    /// Token for a raw byte: `<0xNN>`, else the byte itself as a one-byte token.
    pub(crate) fn byte_token(&self, b: u8) -> Result<u32, TokenizerError> {
        if let Some(&id) = self.token_to_id.get(&format!("<0x{b:02X}>")) {
            return Ok(id);
        }
        std::str::from_utf8(&[b])
            .ok()
            .and_then(|s| self.token_to_id.get(s))
            .copied()
            .ok_or(TokenizerError::MissingByteToken(b))
    }

    /// Tokenizes text whose spaces are already escaped as U+2581.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        struct Sym {
            start: usize,
            len: usize,
            prev: usize,
            next: usize,
        }
        const NONE: usize = usize::MAX;
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            let len = c.len_utf8();
            let idx = syms.len();
            syms.push(Sym {
                start: i,
                len,
                prev: if idx == 0 { NONE } else { idx - 1 },
                next: if i + len == text.len() { NONE } else { idx + 1 },
            });
        }
        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            let s = &text[syms[l].start..syms[l].start + syms[l].len + syms[r].len];
            if let Some(&id) = self.token_to_id.get(s) {
                if let Some(&score) = self.scores.get(id as usize) {
                    heap.push(Bigram {
                        score,
                        left: l,
                        right: r,
                        size: s.len(),
                    });
                }
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i - 1, i);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (b.left, b.right);
            // Staleness is judged by length alone, exactly like llama.cpp.
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            let after = syms[l].next;
            if after != NONE {
                syms[after].prev = l;
            }
            let before = syms[l].prev;
            try_add(&mut heap, &syms, before, l);
            try_add(&mut heap, &syms, l, after);
        }
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            let s = &syms[i];
            let piece = &text[s.start..s.start + s.len];
            match self.token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_token(b)?);
                    }
                }
            }
            i = s.next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_score_wins_and_bytes_fall_back() {
        let toks = ["<0xC3>", "<0xA9>", "▁", "a", "b", "▁a", "ab", "▁ab"];
        let scores = [0.0, 0.0, -1.0, -1.0, -1.0, -3.0, -2.0, -1.5];
        let t2i: HashMap<String, u32> = toks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i as u32))
            .collect();
        let v = SpmVocab {
            token_to_id: &t2i,
            scores: &scores,
        };
        let mut out = Vec::new();
        // "ab" (-2) beats "▁a" (-3), then "▁" + "ab" -> "▁ab".
        v.encode("▁ab", &mut out).unwrap();
        assert_eq!(out, [7]);
        out.clear();
        v.encode("é", &mut out).unwrap();
        assert_eq!(out, [0, 1]);
        out.clear();
        assert!(matches!(
            v.encode("z", &mut out),
            Err(TokenizerError::MissingByteToken(b'z'))
        ));
    }
}

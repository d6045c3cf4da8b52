//! Splitting special tokens out of raw text before tokenization.
//!
//! llama.cpp processes special tokens longest text first; for each one it cuts
//! every occurrence out of the remaining raw-text fragments. That order decides
//! overlaps ("<|a|>b" vs "|>b<") so it is kept. Scanning the text once per
//! special token is too slow for vocabularies with thousands of them (Gemma),
//! so an Aho-Corasick pass first finds which special tokens occur at all and
//! only those take part.

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use crate::attr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

pub(crate) struct SpecialMatcher {
    ac: Option<AhoCorasick>,
    /// Pattern index -> position in the longest-first special token list.
    order: Vec<usize>,
}

impl SpecialMatcher {
    pub(crate) fn new(tokens: &[String], special: &[u32]) -> Self {
        let patterns: Vec<&str> = special
            .iter()
            .map(|&id| tokens[id as usize].as_str())
            .collect();
        let ac = if patterns.is_empty() {
            None
        } else {
            // A non-contiguous NFA builds in time linear in the patterns' total length (the
            // default may build a DFA: a megabyte-long special token would take minutes).
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                .build(&patterns)
                .ok()
        };
        SpecialMatcher {
            ac,
            order: (0..patterns.len()).collect(),
        }
    }

    /// Positions (in the longest-first list) of special tokens present in `text`.
    fn present(&self, text: &str, n: usize) -> Vec<bool> {
        let mut seen = vec![false; n];
        match &self.ac {
            Some(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    seen[self.order[m.pattern().as_usize()]] = true;
                }
            }
            // Building the automaton failed (should not happen): check them all.
            None => seen.iter_mut().for_each(|s| *s = true),
        }
        seen
    }
}

/// Partitions `text` into raw-text fragments and special tokens.
pub(crate) fn partition(
    text: &str,
    tokens: &[String],
    attrs: &[u32],
    special: &[u32],
    matcher: &SpecialMatcher,
    parse_special: bool,
) -> Vec<Fragment> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text {
        start: 0,
        end: text.len(),
    });
    let present = matcher.present(text, special.len());
    let bytes = text.as_bytes();
    for (rank, &id) in special.iter().enumerate() {
        if !present[rank] {
            continue;
        }
        let a = attrs[id as usize];
        // Control and unknown tokens are matched only on request; user-defined
        // tokens always are (as in Hugging Face tokenizers).
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let pat = tokens[id as usize].as_str();
        let mut out = Vec::with_capacity(frags.len() + 2);
        for frag in frags {
            let Fragment::Text { start, end } = frag else {
                out.push(frag);
                continue;
            };
            let mut pos = start;
            while let Some(found) = text[pos..end].find(pat) {
                let m = pos + found;
                let mut left_end = m;
                if a & attr::LSTRIP != 0 {
                    while left_end > pos && bytes[left_end - 1].is_ascii_whitespace_c() {
                        left_end -= 1;
                    }
                }
                if left_end > pos {
                    out.push(Fragment::Text {
                        start: pos,
                        end: left_end,
                    });
                }
                out.push(Fragment::Token(id));
                pos = m + pat.len();
                if a & attr::RSTRIP != 0 {
                    while pos < end && bytes[pos].is_ascii_whitespace_c() {
                        pos += 1;
                    }
                }
            }
            if pos < end {
                out.push(Fragment::Text { start: pos, end });
            }
        }
        frags = out;
    }
    frags
}

trait CSpace {
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    /// C `isspace`: unlike `u8::is_ascii_whitespace` it includes vertical tab.
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}

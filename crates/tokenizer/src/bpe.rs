//! Rank-ordered BPE merging of one pre-tokenized, byte-encoded word.
//!
//! Strings are interned to integer "piece ids" up front so the merge loop only
//! hashes integer pairs: ids below the vocabulary size are token ids, larger
//! ids are strings that occur in merges without being tokens themselves.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// (rank, left index, left piece, right piece, right index)
/// u32 indices keep heap entries small: a long word's heap is memory-bound.
type Candidate = (u32, u32, u32, u32, u32);

pub(crate) struct BpeMerges {
    /// (left piece, right piece) -> (rank, merged piece)
    ranks: HashMap<(u32, u32), (u32, u32)>,
    /// Strings from merges that are not tokens, numbered from `n_vocab`.
    extra: HashMap<String, u32>,
    n_vocab: u32,
}

impl BpeMerges {
    /// `merges` are "left right" strings in rank order. The split is at the first
    /// space after the first byte, so a left side may itself be a space.
    pub(crate) fn new<'a>(
        merges: impl IntoIterator<Item = &'a str>,
        token_to_id: &HashMap<String, u32>,
        n_vocab: u32,
    ) -> Self {
        let mut this = BpeMerges {
            ranks: HashMap::new(),
            extra: HashMap::new(),
            n_vocab,
        };
        for (rank, merge) in merges.into_iter().enumerate() {
            let split = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some(split) = split else { continue };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            // Piece ids are u32: merges past that many distinct strings are dropped.
            let (Some(l), Some(r), Some(m)) = (
                this.intern(left, token_to_id),
                this.intern(right, token_to_id),
                this.intern(&format!("{left}{right}"), token_to_id),
            ) else {
                continue;
            };
            // The first occurrence of a pair keeps its rank.
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            this.ranks.entry((l, r)).or_insert((rank, m));
        }
        this
    }

    fn intern(&mut self, s: &str, token_to_id: &HashMap<String, u32>) -> Option<u32> {
        if let Some(&id) = token_to_id.get(s) {
            return Some(id);
        }
        if let Some(&id) = self.extra.get(s) {
            return Some(id);
        }
        let next = u32::try_from(self.extra.len())
            .ok()
            .and_then(|e| self.n_vocab.checked_add(e))?;
        self.extra.insert(s.to_string(), next);
        Some(next)
    }

    fn lookup(&self, s: &str, token_to_id: &HashMap<String, u32>) -> Option<u32> {
        token_to_id.get(s).or_else(|| self.extra.get(s)).copied()
    }

    /// Merges one word and appends its tokens. Symbols that end up as no token
    /// fall back to single-byte tokens of their text, and bytes without a
    /// token are dropped, as llama.cpp does.
    /// `hex_bytes`: byte fallback tokens are `<0xNN>` (Gemma 4) rather than
    /// the byte's own one-character text.
    pub(crate) fn encode_word(
        &self,
        word: &str,
        token_to_id: &HashMap<String, u32>,
        hex_bytes: bool,
        out: &mut Vec<u32>,
    ) {
        struct Sym {
            start: usize,
            len: usize,
            piece: Option<u32>,
            prev: usize,
            next: usize,
        }
        const NONE: usize = usize::MAX;
        let mut syms: Vec<Sym> = Vec::with_capacity(word.len());
        for (i, c) in word.char_indices() {
            let len = c.len_utf8();
            let idx = syms.len();
            syms.push(Sym {
                start: i,
                len,
                piece: self.lookup(&word[i..i + len], token_to_id),
                prev: if idx == 0 { NONE } else { idx - 1 },
                next: if i + len == word.len() { NONE } else { idx + 1 },
            });
        }
        // Min-heap on (rank, left index); entries remember the pieces they were
        // built from so stale ones can be recognised after neighbours merged.
        let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            if let (Some(lp), Some(rp)) = (syms[l].piece, syms[r].piece) {
                if let Some(&(rank, _)) = self.ranks.get(&(lp, rp)) {
                    heap.push(Reverse((rank, l as u32, lp, rp, r as u32)));
                }
            }
        };
        for i in 1..syms.len() {
            push(&mut heap, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, lp, rp, r))) = heap.pop() {
            let (l, r) = (l as usize, r as usize);
            if syms[l].len == 0
                || syms[r].len == 0
                || syms[l].piece != Some(lp)
                || syms[r].piece != Some(rp)
            {
                continue;
            }
            // Pieces only ever grow, so equal piece ids at both indices mean the
            // pair is still adjacent and unchanged.
            if syms[l].next != r {
                continue;
            }
            let merged = self.ranks[&(lp, rp)].1;
            syms[l].len += syms[r].len;
            syms[l].piece = Some(merged);
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            let after = syms[l].next;
            if after != NONE {
                syms[after].prev = l;
            }
            let before = syms[l].prev;
            push(&mut heap, &syms, before, l);
            push(&mut heap, &syms, l, after);
        }
        for s in syms.iter().filter(|s| s.len > 0) {
            match s.piece {
                Some(p) if p < self.n_vocab => out.push(p),
                _ => {
                    let text = &word[s.start..s.start + s.len];
                    for b in text.bytes() {
                        let id = if hex_bytes {
                            token_to_id.get(&format!("<0x{b:02X}>"))
                        } else if b.is_ascii() {
                            token_to_id.get(std::str::from_utf8(&[b]).unwrap_or(""))
                        } else {
                            None
                        };
                        if let Some(&id) = id {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_rank_not_position() {
        let vocab: Vec<&str> = vec!["a", "b", "c", "ab", "bc", "abc"];
        let t2i: HashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i as u32))
            .collect();
        // "b c" outranks "a b", so "abc" = a + bc, and "a bc" then yields abc.
        let bpe = BpeMerges::new(["b c", "a b", "a bc"], &t2i, vocab.len() as u32);
        let mut out = Vec::new();
        bpe.encode_word("abc", &t2i, false, &mut out);
        assert_eq!(out, [5]);
        out.clear();
        bpe.encode_word("abab", &t2i, false, &mut out);
        assert_eq!(out, [3, 3]);
        out.clear();
        // Unknown characters without byte tokens are dropped.
        bpe.encode_word("aé", &t2i, false, &mut out);
        assert_eq!(out, [0]);
    }
}

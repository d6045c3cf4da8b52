//! Codepoint classes and the GPT-2 byte <-> unicode mapping.
//!
//! Pre-tokenizer splits depend on the exact category of every codepoint, so the
//! table is generated from the same Unicode version llama.cpp uses (15.1).

use std::sync::OnceLock;

use crate::unicode_table::CATEGORY_RANGES;

pub(crate) const NUMBER: u8 = 1;
pub(crate) const LETTER: u8 = 2;
pub(crate) const PUNCTUATION: u8 = 4;
pub(crate) const MARK: u8 = 8;
pub(crate) const SYMBOL: u8 = 16;
#[allow(dead_code)]
pub(crate) const SEPARATOR: u8 = 32;
#[allow(dead_code)]
pub(crate) const CONTROL: u8 = 64;
#[allow(dead_code)]
pub(crate) const UNASSIGNED: u8 = 128;

const MAX_CODEPOINT: usize = 0x110000;

/// One byte per codepoint: a lookup in the hot loop of every splitter is
/// cheaper than a binary search over ranges, and 1.1 MB is built once.
fn category_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![0u8; MAX_CODEPOINT];
        for (i, &entry) in CATEGORY_RANGES.iter().enumerate() {
            let start = (entry >> 8) as usize;
            let end = CATEGORY_RANGES
                .get(i + 1)
                .map_or(MAX_CODEPOINT, |next| (next >> 8) as usize);
            table[start..end].fill((entry & 0xFF) as u8);
        }
        table
    })
}

/// Category bits of a codepoint (one of the constants above).
#[inline]
pub(crate) fn category(c: char) -> u8 {
    category_table()[c as usize]
}

/// Unicode White_Space, the set llama.cpp treats as `\s`.
#[inline]
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

#[inline]
pub(crate) fn is_letter(c: char) -> bool {
    category(c) & LETTER != 0
}

#[inline]
pub(crate) fn is_number(c: char) -> bool {
    category(c) & NUMBER != 0
}

struct ByteMaps {
    to_char: [char; 256],
    /// Indexed by codepoint; only codepoints below 0x144 are ever produced.
    from_char: Vec<Option<u8>>,
}

/// GPT-2's reversible byte -> printable character mapping: printable Latin-1
/// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
fn byte_maps() -> &'static ByteMaps {
    static MAPS: OnceLock<ByteMaps> = OnceLock::new();
    MAPS.get_or_init(|| {
        let printable = |b: u32| {
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
        };
        let mut to_char = ['\0'; 256];
        let mut from_char = vec![None; 0x200];
        let mut next_extra = 0x100u32;
        for b in 0..256u32 {
            let cp = if printable(b) {
                b
            } else {
                let cp = next_extra;
                next_extra += 1;
                cp
            };
            let c = char::from_u32(cp).expect("codepoints below 0x200 are valid");
            to_char[b as usize] = c;
            from_char[cp as usize] = Some(b as u8);
        }
        ByteMaps { to_char, from_char }
    })
}

#[inline]
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_maps().to_char[b as usize]
}

#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    byte_maps().from_char.get(c as usize).copied().flatten()
}

/// GPT-2 byte encoding of a UTF-8 string.
pub(crate) fn byte_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for &b in text.as_bytes() {
        out.push(byte_to_char(b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_matches_gpt2() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xA0), 'ł');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn categories() {
        assert_eq!(category('a'), LETTER);
        assert_eq!(category('東'), LETTER);
        assert_eq!(category('7'), NUMBER);
        assert_eq!(category('½'), NUMBER);
        assert_eq!(category('!'), PUNCTUATION);
        assert_eq!(category('$'), SYMBOL);
        assert_eq!(category('\u{301}'), MARK);
        assert_eq!(category('🚀'), SYMBOL);
        assert_eq!(category(' '), SEPARATOR);
        assert_eq!(category('\u{378}'), UNASSIGNED);
        // Added in Unicode 15.1 (CJK extension I): must be a letter.
        assert_eq!(category('\u{2EBF0}'), LETTER);
        assert!(is_whitespace('\u{3000}'));
        assert!(!is_whitespace('\u{1C}'));
    }
}

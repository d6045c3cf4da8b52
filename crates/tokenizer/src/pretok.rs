//! Byte-level BPE pre-tokenizers: split text into words before merging.
//!
//! llama.cpp applies a chain of regexes per `tokenizer.ggml.pre`; each regex
//! re-splits every piece produced by the previous one, and both the matches and
//! the gaps between them become pieces. Three regexes (GPT-2's, LLaMA 3's and
//! Qwen 2's) are implemented as hand-written scanners there, and those scanners
//! differ from a real regex engine in corner cases, so they are reproduced as
//! scanners here too. The remaining regexes run through a regex engine on a
//! "collapsed" copy of the text in which every non-ASCII codepoint is replaced
//! by one stand-in character per category; that is how llama.cpp evaluates
//! `\p{..}` classes and it is what makes e.g. non-ASCII letters count as both
//! upper and lower case in the GPT-4o pattern.

use fancy_regex::Regex;

use crate::unicode::{self, category, is_letter, is_number, is_whitespace};
use crate::TokenizerError;

/// Which family of pre-tokenizer a `tokenizer.ggml.pre` value selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreKind {
    Default,
    Llama3,
    DeepseekLlm,
    DeepseekCoder,
    Falcon,
    /// starcoder, refact, command-r, smollm, codeshell, exaone, minerva
    Starcoder,
    /// gpt-2, mpt, olmo, jais, phi-2
    Gpt2,
    /// qwen2, deepseek-r1-qwen, stablelm2, megrez
    Qwen2,
    /// Qwen 2 with combining marks counted as letters
    Qwen35,
    /// Gemma 4: only runs of newlines are split off; merges span whole lines.
    Gemma4,
    Poro,
    Chatglm4,
    Viking,
    Tekken,
    Gpt4o,
}

/// Per-`pre` settings that llama.cpp couples to the pre-tokenizer choice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreConfig {
    pub kind: PreKind,
    pub clean_spaces: bool,
    pub ignore_merges: bool,
    /// Default for add_bos before `tokenizer.ggml.add_bos_token` overrides it.
    pub add_bos: bool,
    /// chatglm-bpe has no BOS even if the default id would be valid.
    pub no_bos: bool,
}

/// Looks up a `tokenizer.ggml.pre` value; `None` for values this crate does not know.
pub(crate) fn pre_config(name: &str) -> Option<PreConfig> {
    use PreKind::*;
    let c = |kind, clean_spaces, ignore_merges, add_bos| PreConfig {
        kind,
        clean_spaces,
        ignore_merges,
        add_bos,
        no_bos: false,
    };
    Some(match name {
        "" | "default" => c(Default, true, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => c(Llama3, true, true, true),
        "dbrx" | "smaug-bpe" => c(Llama3, true, false, false),
        "deepseek-llm" => c(DeepseekLlm, false, false, false),
        "deepseek-coder" => c(DeepseekCoder, false, false, false),
        "falcon" => c(Falcon, true, false, false),
        "mpt" | "olmo" | "jais" | "exaone4" => c(Gpt2, true, false, false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" => c(Gpt2, true, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            c(Starcoder, true, false, false)
        }
        "command-r" | "smollm" => c(Starcoder, false, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => c(Qwen2, false, false, false),
        "stablelm2" | "megrez" => c(Qwen2, true, false, false),
        "qwen35" => c(Qwen35, false, false, false),
        "gemma4" | "granite-embed-multi-311m" => c(Gemma4, true, false, false),
        "poro-chat" => c(Poro, false, false, false),
        "bloom" | "gpt3-finnish" => c(Poro, true, false, false),
        "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => c(Gpt2, true, false, false),
        "trillion" | "granite-docling" => c(Gpt2, false, false, false),
        "hunyuan" | "solar-open" => c(Qwen2, false, false, false),
        "minimax-m2" => c(Gpt4o, false, false, false),
        "glm4" | "glm5" => PreConfig {
            no_bos: true,
            ..c(Chatglm4, true, true, false)
        },
        "chatglm-bpe" => PreConfig {
            no_bos: true,
            ..c(Chatglm4, true, false, false)
        },
        "viking" => c(Viking, false, false, false),
        "tekken" => c(Tekken, false, true, true),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => c(Gpt4o, false, false, false),
        _ => return None,
    })
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const NEWLINES_RE: &str = r"[^\n]+|[\n]+";
const CJK_RE: &str = r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+";
const PORO_RE: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+";

fn regexes(kind: PreKind) -> Vec<&'static str> {
    use PreKind::*;
    match kind {
        Llama3 | Chatglm4 => vec![LLAMA3_RE],
        // Non-ASCII characters are written as escapes: several of them (e.g.
        // U+1FD3, U+2126) would otherwise be changed by Unicode normalization.
        DeepseekLlm => vec![
            r"[\r\n]",
            r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+",
            r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
            r"\s+$",
            CJK_RE,
            r"\p{N}+",
        ],
        DeepseekCoder => vec![r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_RE, r"\p{N}"],
        Falcon => vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2_RE, "[0-9][0-9][0-9]"],
        Starcoder => vec![r"\p{N}", GPT2_RE],
        Gpt2 => vec![GPT2_RE],
        Qwen2 => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Qwen35 => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Gemma4 => vec![NEWLINES_RE],
        Poro => vec![PORO_RE],
        Viking => vec![PORO_RE, r"\p{N}"],
        Tekken => vec![
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Gpt4o => vec![
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Default => vec![
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_RE,
            r"\p{N}+",
            "[0-9][0-9][0-9]",
        ],
    }
}

enum Step {
    Gpt2,
    Llama3,
    /// Same scanner as LLaMA 3 but digits are split one by one.
    Qwen2,
    /// Qwen 2 scanner where combining marks join letters.
    Qwen35,
    /// Alternating runs of newlines and everything else.
    Newlines,
    Regex {
        re: Regex,
        collapsed: bool,
    },
}

pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

// Stand-ins for non-ASCII codepoints in the collapsed text, one per category.
const STANDIN_OTHER: char = '\u{D0}';
const STANDIN_NUMBER: char = '\u{D1}';
const STANDIN_LETTER: char = '\u{D2}';
const STANDIN_PUNCT: char = '\u{D3}';
const STANDIN_MARK: char = '\u{D4}';
const STANDIN_SYMBOL: char = '\u{D5}';
/// Non-ASCII whitespace becomes a vertical tab, which every `\s` matches.
const STANDIN_SPACE: char = '\u{0B}';

/// Character-class body matching a category in collapsed text: its stand-in
/// plus the ASCII codepoints of that category (ASCII is never collapsed).
fn class_body(name: &str) -> Option<&'static str> {
    Some(match name {
        "N" => r"\x{D1}0-9",
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => r"\x{D2}A-Za-z",
        "P" => r"\x{D3}!-#%-*,-/:-;?-@\[-\]_\{\}",
        "M" => r"\x{D4}",
        "S" => r"\x{D5}\$\+<->\^`\|~",
        _ => return None,
    })
}

/// Rewrites `\p{X}` classes for matching against collapsed text.
fn collapse_regex(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() * 2);
    let chars: Vec<char> = expr.chars().collect();
    let mut inside = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let escaped = i > 0 && chars[i - 1] == '\\';
        if c == '[' && !escaped {
            inside = true;
        } else if c == ']' && inside && !escaped {
            inside = false;
        } else if c == '\\' && chars.get(i + 1) == Some(&'p') && chars.get(i + 2) == Some(&'{') {
            if let Some(close) = chars[i + 3..].iter().position(|&x| x == '}') {
                let name: String = chars[i + 3..i + 3 + close].iter().collect();
                if let Some(body) = class_body(&name) {
                    if inside {
                        out.push_str(body);
                    } else {
                        out.push('[');
                        out.push_str(body);
                        out.push(']');
                    }
                    i += 3 + close + 1;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn collapse_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    if is_whitespace(c) {
        return STANDIN_SPACE;
    }
    match category(c) {
        unicode::NUMBER => STANDIN_NUMBER,
        unicode::LETTER => STANDIN_LETTER,
        unicode::PUNCTUATION => STANDIN_PUNCT,
        unicode::MARK => STANDIN_MARK,
        unicode::SYMBOL => STANDIN_SYMBOL,
        _ => STANDIN_OTHER,
    }
}

impl PreTokenizer {
    pub(crate) fn new(kind: PreKind) -> Result<Self, TokenizerError> {
        let mut steps = Vec::new();
        for expr in regexes(kind) {
            let step = if expr == GPT2_RE {
                Step::Gpt2
            } else if expr == LLAMA3_RE {
                Step::Llama3
            } else if kind == PreKind::Qwen2 {
                Step::Qwen2
            } else if kind == PreKind::Qwen35 {
                Step::Qwen35
            } else if expr == NEWLINES_RE {
                Step::Newlines
            } else {
                let collapsed = expr.contains("\\p{");
                let source = if collapsed {
                    collapse_regex(expr)
                } else {
                    expr.to_string()
                };
                let re = Regex::new(&source).map_err(|e| {
                    TokenizerError::Internal(format!("pre-tokenizer regex {expr:?}: {e}"))
                })?;
                Step::Regex { re, collapsed }
            };
            steps.push(step);
        }
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words (substrings, in order, covering all of it).
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let cpts: Vec<char> = text.chars().collect();
        // Each piece is a codepoint count; pieces tile the text.
        let mut pieces = vec![cpts.len()];
        let mut collapsed: Option<(String, Vec<usize>)> = None;
        let mut widened: Option<(String, Vec<usize>)> = None;
        for step in &self.steps {
            pieces = match step {
                Step::Gpt2 => scan_pieces(&cpts, &pieces, scan_gpt2),
                Step::Llama3 => scan_pieces(&cpts, &pieces, |c| scan_llama3(c, 3, false)),
                Step::Qwen2 => scan_pieces(&cpts, &pieces, |c| scan_llama3(c, 1, false)),
                Step::Qwen35 => scan_pieces(&cpts, &pieces, |c| scan_llama3(c, 1, true)),
                Step::Newlines => scan_pieces(&cpts, &pieces, scan_newlines),
                Step::Regex {
                    re,
                    collapsed: true,
                } => {
                    let (s, offs) =
                        collapsed.get_or_insert_with(|| mapped_text(&cpts, collapse_char));
                    regex_pieces(re, s, offs, &pieces)
                }
                Step::Regex {
                    re,
                    collapsed: false,
                } => {
                    let (s, offs) = widened.get_or_insert_with(|| {
                        mapped_text(&cpts, |c| {
                            if !c.is_ascii() && is_whitespace(c) {
                                STANDIN_SPACE
                            } else {
                                c
                            }
                        })
                    });
                    regex_pieces(re, s, offs, &pieces)
                }
            };
        }
        let mut words = Vec::with_capacity(pieces.len());
        let mut byte = 0;
        let mut cp = 0;
        let mut chars = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()));
        let mut next_boundary = chars.next();
        for n in pieces {
            let start = byte;
            for _ in 0..n {
                next_boundary = chars.next();
            }
            cp += n;
            byte = next_boundary.unwrap_or(text.len());
            words.push(&text[start..byte]);
        }
        debug_assert_eq!(cp, cpts.len());
        words
    }
}

/// The text with each codepoint mapped, plus the byte offset of every codepoint.
fn mapped_text(cpts: &[char], f: impl Fn(char) -> char) -> (String, Vec<usize>) {
    let mut s = String::with_capacity(cpts.len());
    let mut offs = Vec::with_capacity(cpts.len() + 1);
    for &c in cpts {
        offs.push(s.len());
        s.push(f(c));
    }
    offs.push(s.len());
    (s, offs)
}

fn regex_pieces(re: &Regex, s: &str, offs: &[usize], pieces: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut start_cp = 0;
    for &len in pieces {
        let end_cp = start_cp + len;
        let sub = &s[offs[start_cp]..offs[end_cp]];
        let base = offs[start_cp];
        let to_cp = |byte: usize| offs.partition_point(|&o| o < base + byte);
        let mut last = start_cp;
        let mut pos = 0;
        while pos <= sub.len() {
            // A regex error here means backtracking limits were hit; the piece is
            // then left unsplit rather than failing the whole encode.
            let m = match re.find_from_pos(sub, pos) {
                Ok(Some(m)) => m,
                _ => break,
            };
            if m.end() == m.start() {
                // None of the pre-tokenizer regexes can match empty; guard anyway.
                pos = m.end() + sub[m.end()..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            let (ms, me) = (to_cp(m.start()), to_cp(m.end()));
            if ms > last {
                out.push(ms - last);
            }
            out.push(me - ms);
            last = me;
            pos = m.end();
        }
        if end_cp > last {
            out.push(end_cp - last);
        }
        start_cp = end_cp;
    }
    out
}

/// Runs a scanner over each existing piece; the scanner returns sub-piece lengths.
fn scan_pieces(
    cpts: &[char],
    pieces: &[usize],
    scan: impl Fn(&[char]) -> Vec<usize>,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut start = 0;
    for &len in pieces {
        out.extend(scan(&cpts[start..start + len]));
        start += len;
    }
    out
}

fn is_contraction_suffix(next: char, next2: Option<char>, ignore_case: bool) -> usize {
    let lower = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    match lower(next) {
        's' | 't' | 'm' | 'd' => 2,
        n => match (n, next2.map(lower)) {
            ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => 3,
            _ => 0,
        },
    }
}

fn scan_newlines(c: &[char]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < c.len() {
        let nl = c[pos] == '\n';
        let start = pos;
        while pos < c.len() && (c[pos] == '\n') == nl {
            pos += 1;
        }
        out.push(pos - start);
    }
    out
}

/// Hand-written GPT-2 pattern:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn scan_gpt2(c: &[char]) -> Vec<usize> {
    let n = c.len();
    let mut out = Vec::new();
    let letter = |i: usize| i < n && is_letter(c[i]);
    let number = |i: usize| i < n && is_number(c[i]);
    let space = |i: usize| i < n && is_whitespace(c[i]);
    let other = |i: usize| i < n && !is_whitespace(c[i]) && !is_letter(c[i]) && !is_number(c[i]);
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let cpt = c[pos];
        if cpt == '\'' && pos + 1 < n {
            let len = is_contraction_suffix(c[pos + 1], c.get(pos + 2).copied(), false);
            if len > 0 && pos + len <= n {
                out.push(len);
                pos += len;
                continue;
            }
        }
        let look = if cpt == ' ' { pos + 1 } else { pos };
        let class: Option<&dyn Fn(usize) -> bool> = if letter(look) {
            Some(&letter)
        } else if number(look) {
            Some(&number)
        } else if other(look) {
            Some(&other)
        } else {
            None
        };
        if let Some(class) = class {
            pos = look;
            while class(pos) {
                pos += 1;
            }
            out.push(pos - start);
            continue;
        }
        let mut ws = 0;
        while space(pos + ws) {
            ws += 1;
        }
        if ws > 1 && pos + ws < n {
            // `\s+(?!\S)`: leave the last space to prefix the following word.
            pos += ws - 1;
        } else if ws > 0 {
            pos += ws;
        } else {
            pos += 1;
        }
        out.push(pos - start);
    }
    out
}

/// Hand-written LLaMA 3 pattern (digits grouped by `max_digits`; Qwen 2 uses 1):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// With `marks`, `\p{L}` in the word classes becomes `[\p{L}\p{M}]` (Qwen 3.5).
fn scan_llama3(c: &[char], max_digits: usize, marks: bool) -> Vec<usize> {
    let n = c.len();
    let mut out = Vec::new();
    let wordish = |ch: char| is_letter(ch) || (marks && category(ch) == unicode::MARK);
    let letter = |i: usize| i < n && wordish(c[i]);
    let number = |i: usize| i < n && is_number(c[i]);
    let space = |i: usize| i < n && is_whitespace(c[i]);
    let other = |i: usize| i < n && !is_whitespace(c[i]) && !wordish(c[i]) && !is_number(c[i]);
    let newline = |i: usize| i < n && (c[i] == '\r' || c[i] == '\n');
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let cpt = c[pos];
        if cpt == '\'' && pos + 1 < n {
            let len = is_contraction_suffix(c[pos + 1], c.get(pos + 2).copied(), true);
            if len > 0 && pos + len <= n {
                out.push(len);
                pos += len;
                continue;
            }
        }
        if !(cpt == '\r' || cpt == '\n' || is_number(cpt)) && (letter(pos) || letter(pos + 1)) {
            pos += 1;
            while letter(pos) {
                pos += 1;
            }
            out.push(pos - start);
            continue;
        }
        if is_number(cpt) {
            let mut group = pos;
            while number(pos) {
                pos += 1;
                if pos - group >= max_digits {
                    out.push(pos - group);
                    group = pos;
                }
            }
            if pos > group {
                out.push(pos - group);
            }
            continue;
        }
        let look = if cpt == ' ' { pos + 1 } else { pos };
        if other(look) {
            pos = look;
            while other(pos) {
                pos += 1;
            }
            while newline(pos) {
                pos += 1;
            }
            out.push(pos - start);
            continue;
        }
        let mut ws = 0;
        let mut last_newline_end = 0;
        while space(pos + ws) {
            if newline(pos + ws) {
                last_newline_end = pos + ws + 1;
            }
            ws += 1;
        }
        if last_newline_end > 0 {
            pos = last_newline_end;
        } else if ws > 1 && pos + ws < n {
            pos += ws - 1;
        } else if ws > 0 {
            pos += ws;
        } else {
            pos += 1;
        }
        out.push(pos - start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(kind: PreKind, text: &str) -> Vec<String> {
        PreTokenizer::new(kind)
            .unwrap()
            .split(text)
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            split(PreKind::Gpt2, "Hello world's  3.14 !!\n\n x"),
            ["Hello", " world", "'s", " ", " 3", ".", "14", " !!", "\n\n", " x"]
        );
    }

    #[test]
    fn llama3_digits_and_newlines() {
        assert_eq!(
            split(PreKind::Llama3, "12345 I'M ok\n\n  end"),
            ["123", "45", " I", "'M", " ok", "\n\n", " ", " end"]
        );
        assert_eq!(split(PreKind::Qwen2, "123"), ["1", "2", "3"]);
    }

    #[test]
    fn default_chain_splits_punctuation_and_digit_triples() {
        assert_eq!(
            split(PreKind::Default, "a+b=12345"),
            ["a", "+", "b", "=", "123", "45"]
        );
    }

    #[test]
    fn collapse_rewrites_categories() {
        assert_eq!(collapse_regex(r"\p{N}+"), r"[\x{D1}0-9]+");
        assert_eq!(collapse_regex(r"[^\s\p{L}]"), r"[^\s\x{D2}A-Za-z]");
    }

    #[test]
    fn gpt4o_case_split_on_collapsed_letters() {
        // The first alternative wins even when shorter: " À" then "B".
        assert_eq!(
            split(PreKind::Gpt4o, "HelloWorld ÀB"),
            ["Hello", "World", " À", "B"]
        );
    }
}

//! Tokenizers of GGUF models, producing exactly llama.cpp's token ids.
//!
//! Supported vocabularies (`tokenizer.ggml.model`): byte-level BPE (`gpt2`, with
//! the pre-tokenizer named by `tokenizer.ggml.pre`), SentencePiece BPE with byte
//! fallback (`llama`: LLaMA 2, Mistral, Gemma 1-3) and Gemma 4's
//! SentencePiece-style BPE (`gemma4`). WordPiece, Unigram and RWKV are not.
//! Special tokens are split out of the text first, as llama.cpp's
//! `tokenizer_st_partition` does.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = gguf::GgufFile::open("model.gguf")?;
//! let tok = tokenizer::Tokenizer::from_gguf(file.metadata())?;
//! let ids = tok.encode("Hello", true, true)?; // like llama_tokenize(add_special, parse_special)
//! let text = tok.decode(&ids, false)?; // control tokens hidden
//! let mut stream = tokenizer::StreamDecoder::new(false);
//! for &id in &ids {
//!     print!("{}", stream.push(&tok, id)?); // complete UTF-8 only
//! }
//! let prompt = tok.apply_chat_template(&[tokenizer::ChatMessage::user("Hi")], true, "llama")?;
//! let prompt_ids = tok.encode_chat_prompt(&prompt)?;
//! # let _ = (text, prompt_ids); Ok(()) }
//! ```
//!
//! Chat templates are rendered with minijinja the way Hugging Face
//! `apply_chat_template` renders them with jinja2 (see [`chat`]).

mod bpe;
pub mod chat;
pub mod chat_guard;
mod config;
#[doc(hidden)]
pub mod fuzzing;
mod pretok;
mod pyjson;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_table;
mod vocab;

use std::collections::{HashMap, HashSet};

pub use chat::{render_chat, render_chat_json, ChatMessage, ChatOptions};
pub use config::TokenizerConfig;
pub use stream::StreamDecoder;

use crate::special::Fragment;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("invalid tokenizer metadata: {0}")]
    Metadata(String),
    #[error(
        "unsupported tokenizer model '{0}' (supported: gpt2 byte-level BPE, llama SentencePiece)"
    )]
    UnsupportedModel(String),
    #[error("token id {id} is out of range (vocabulary has {n_vocab} tokens)")]
    InvalidToken { id: u32, n_vocab: usize },
    #[error("the vocabulary has no token for byte 0x{0:02X}")]
    MissingByteToken(u8),
    #[error("the model asks for a {0} token but its vocabulary defines none")]
    MissingSpecial(&'static str),
    #[error("chat template: {0}")]
    Template(String),
    #[error("internal tokenizer error: {0}")]
    Internal(String),
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE (GPT-2 style), `tokenizer.ggml.model = "gpt2"`.
    Bpe,
    /// SentencePiece BPE with byte fallback, `tokenizer.ggml.model = "llama"`.
    Spm,
}

pub struct Tokenizer {
    kind: TokenizerKind,
    pre_name: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<u32>,
    token_to_id: HashMap<String, u32>,
    /// Piece bytes of every token as shown with `special = true`.
    pieces: Vec<Vec<u8>>,
    /// Control, user-defined and unknown tokens, longest text first.
    special_tokens: Vec<u32>,
    special_matcher: special::SpecialMatcher,
    eog: HashSet<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    ignore_merges: bool,
    /// Gemma 4 style BPE: spaces escaped as U+2581, merges on raw UTF-8, `<0xNN>` byte tokens.
    spm_style_bpe: bool,
    pre: Option<pretok::PreTokenizer>,
    bpe: Option<bpe::BpeMerges>,
    chat_template: Option<String>,
}

/// Splits `text` into words the way llama.cpp's BPE pre-tokenizer named `pre`
/// (`tokenizer.ggml.pre`) does, before byte encoding and merges. Unknown names
/// are an error here (a vocabulary falls back to "default" instead).
pub fn pretokenize<'t>(pre: &str, text: &'t str) -> Result<Vec<&'t str>> {
    let cfg = pretok::pre_config(pre)
        .ok_or_else(|| TokenizerError::Metadata(format!("unknown pre-tokenizer '{pre}'")))?;
    Ok(pretok::PreTokenizer::new(cfg.kind)?.split(text))
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Reads the vocabulary from a GGUF file's metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(md: &gguf::Metadata) -> Result<Tokenizer> {
        Tokenizer::new(TokenizerConfig::from_metadata(md)?)
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The BPE pre-tokenizer in use ("default" when unknown or absent); empty for SentencePiece.
    pub fn pre(&self) -> &str {
        &self.pre_name
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// `tokenizer.chat_template` from the file, if any (or the one set since).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Replaces the file's chat template (e.g. with one the user trusts more).
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }

    /// True for tokens that end generation (eos, eot, eom and the usual
    /// end-of-turn texts such as `<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eog.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Ids of the reasoning delimiters (`<think>`, `</think>` or the
    /// `<thinking>` variant) when the vocabulary has both as tokens, so callers
    /// can separate a model's reasoning from its answer.
    pub fn thinking_tags(&self) -> Option<(u32, u32)> {
        [("<think>", "</think>"), ("<thinking>", "</thinking>")]
            .iter()
            .find_map(|(open, close)| Some((self.token_id(open)?, self.token_id(close)?)))
    }

    /// Id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Raw vocabulary text of a token (byte-level tokens show as e.g. "Ġthe").
    pub fn token_text(&self, id: u32) -> Result<&str> {
        self.check(id)?;
        Ok(&self.tokens[id as usize])
    }

    /// Attribute bits of a token, see [`attr`].
    pub fn token_attr(&self, id: u32) -> Result<u32> {
        self.check(id)?;
        Ok(self.attrs[id as usize])
    }

    pub fn token_score(&self, id: u32) -> Result<f32> {
        self.check(id)?;
        Ok(self.scores[id as usize])
    }

    /// Control or unknown token: rendered only when asked for special tokens.
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & (attr::CONTROL | attr::UNKNOWN) != 0)
    }

    fn check(&self, id: u32) -> Result<()> {
        if (id as usize) < self.tokens.len() {
            Ok(())
        } else {
            Err(TokenizerError::InvalidToken {
                id,
                n_vocab: self.tokens.len(),
            })
        }
    }

    /// Tokenizes like `llama_tokenize`: `add_special` adds BOS/EOS as the model
    /// asks (`add_bos`/`add_eos`), `parse_special` turns control-token texts in
    /// `text` into those tokens. User-defined tokens (e.g. `<think>`) are matched
    /// even when `parse_special` is false, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let frags = special::partition(
            text,
            &self.tokens,
            &self.attrs,
            &self.special_tokens,
            &self.special_matcher,
            parse_special,
        );
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.push(self.bos.ok_or(TokenizerError::MissingSpecial("BOS"))?);
        }
        match self.kind {
            TokenizerKind::Spm => {
                let spm = spm::SpmVocab {
                    token_to_id: &self.token_to_id,
                    scores: &self.scores,
                };
                // A space is prefixed to text at the start and after each special token.
                let mut prev_special = true;
                for f in frags {
                    match f {
                        Fragment::Text { start, end } => {
                            let mut s = String::with_capacity(end - start + 4);
                            if self.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(&text[start..end]);
                            let escaped = s.replace(' ', "\u{2581}");
                            spm.encode(&escaped, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            TokenizerKind::Bpe => {
                let (Some(pre), Some(bpe)) = (&self.pre, &self.bpe) else {
                    return Err(TokenizerError::Internal(
                        "BPE tokenizer without merges".into(),
                    ));
                };
                let hex_bytes = self.spm_style_bpe;
                for f in frags {
                    match f {
                        Fragment::Text { start, end } => {
                            let escaped;
                            let frag = if self.spm_style_bpe {
                                escaped = text[start..end].replace(' ', "\u{2581}");
                                escaped.as_str()
                            } else {
                                &text[start..end]
                            };
                            for word in pre.split(frag) {
                                let encoded = if self.spm_style_bpe {
                                    word.to_string()
                                } else {
                                    unicode::byte_encode(word)
                                };
                                let known = self.token_to_id.get(&encoded).copied();
                                match known {
                                    Some(id) if self.ignore_merges => out.push(id),
                                    // A run of newlines is one token when the vocabulary has it.
                                    Some(id)
                                        if self.spm_style_bpe
                                            && word.bytes().all(|b| b == b'\n') =>
                                    {
                                        out.push(id)
                                    }
                                    _ => bpe.encode_word(
                                        &encoded,
                                        &self.token_to_id,
                                        hex_bytes,
                                        &mut out,
                                    ),
                                }
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(self.eos.ok_or(TokenizerError::MissingSpecial("EOS"))?);
        }
        Ok(out)
    }

    /// The bytes a token stands for (llama.cpp's `token_to_piece`). With
    /// `special = false`, control and unknown tokens give no bytes. Pieces may
    /// be partial UTF-8 (byte tokens, split characters).
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Vec<u8>> {
        Ok(self.piece(id, special)?.to_vec())
    }

    pub(crate) fn piece(&self, id: u32, special: bool) -> Result<&[u8]> {
        self.check(id)?;
        if !special && self.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return Ok(&[]);
        }
        Ok(&self.pieces[id as usize])
    }

    /// llama.cpp's `llama_detokenize`: `remove_special` drops a leading BOS and
    /// trailing EOS that the model adds itself, `unparse_special` renders
    /// control tokens. Returns raw bytes.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && self.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == self.eos
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let mut piece = self.piece(id, unparse_special)?;
            if remove_space && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            remove_space = false;
            text.extend_from_slice(piece);
        }
        if self.clean_spaces {
            text = clean_up_spaces(&text);
        }
        Ok(text)
    }

    /// Text of `ids` as `common_detokenize` gives it (nothing removed; control
    /// tokens shown when `special`). Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String> {
        let bytes = self.detokenize(ids, false, special)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// Hugging Face's `clean_up_tokenization_spaces`, in llama.cpp's byte-wise form.
fn clean_up_spaces(t: &[u8]) -> Vec<u8> {
    // " ?", " !", " .", " ,": drop the space.
    let mut a: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // " ' ": drop both spaces around a lone apostrophe. The skipped space is
    // overwritten with NUL first, so the next byte does not see a space before it.
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let x = a[i];
        if i > 0 && x == b'\'' && i + 1 < a.len() && a[i - 1] == b' ' && a[i + 1] == b' ' {
            b.pop();
            b.push(x);
            a[i + 1] = 0;
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've": drop the space.
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for i in 0..b.len() {
        let x = b[i];
        if i > 0 && b[i - 1] == b' ' && x == b'\'' && i + 1 < b.len() {
            let x1 = b[i + 1];
            let x2 = b.get(i + 2).copied();
            if matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')))
            {
                c.pop();
            }
        }
        c.push(x);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        String::from_utf8(clean_up_spaces(s.as_bytes())).unwrap()
    }

    #[test]
    fn clean_up_spaces_like_llama_cpp() {
        assert_eq!(
            clean("Hello , world . ok ? yes !"),
            "Hello, world. ok? yes!"
        );
        assert_eq!(clean("a ' b"), "a'b");
        // The space skipped after " ' " is no longer seen as a space.
        assert_eq!(clean("x ' ' y"), "x'' y");
        assert_eq!(clean("I 'm you 're we 've it 's"), "I'm you're we've it's");
        // " 't", " 'd" and " 'll" keep their space.
        assert_eq!(clean("don 't I 'd we 'll"), "don 't I 'd we 'll");
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<StreamDecoder>();
    }
}

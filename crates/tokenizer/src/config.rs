//! Reading the vocabulary description from GGUF metadata.

use gguf::{Metadata, Value};

use crate::{Result, TokenizerError};

/// Everything a [`crate::Tokenizer`] is built from, as stored in GGUF
/// (`tokenizer.ggml.*`). Public so vocabularies can also be assembled by hand.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`, the BPE pre-tokenizer name.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    /// GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name`; Phi-3 models get whitespace stripping after special tokens.
    pub model_name: Option<String>,
    pub chat_template: Option<String>,
}

fn meta_err(e: gguf::GgufError) -> TokenizerError {
    TokenizerError::Metadata(e.to_string())
}

fn opt_id(md: &Metadata, key: &str) -> Result<Option<u32>> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => match v.as_integer() {
            // Out-of-range ids are tolerated here and ignored later, like llama.cpp.
            Some(i) => Ok(u32::try_from(i).ok()),
            None => Err(TokenizerError::Metadata(format!(
                "{key}: expected an integer token id, found {}",
                v.type_description()
            ))),
        },
    }
}

impl TokenizerConfig {
    pub fn from_metadata(md: &Metadata) -> Result<TokenizerConfig> {
        let model = md
            .get_str("tokenizer.ggml.model")
            .map_err(|e| TokenizerError::Metadata(format!("no tokenizer in this file: {e}")))?
            .to_string();
        let tokens: Vec<String> = md
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(meta_err)?
            .into_iter()
            .map(String::from)
            .collect();
        let scores = match md.get("tokenizer.ggml.scores") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        v.as_f32()
                            .or_else(|| v.as_integer().map(|i| i as f32))
                            .ok_or_else(|| {
                                TokenizerError::Metadata(
                                    "tokenizer.ggml.scores: expected numbers".into(),
                                )
                            })
                    })
                    .collect::<Result<Vec<f32>>>()?,
            ),
            Some(other) => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.scores: expected an array, found {}",
                    other.type_description()
                )))
            }
        };
        let token_types = match md.get("tokenizer.ggml.token_type") {
            None => None,
            Some(_) => Some(
                md.get_i32_array("tokenizer.ggml.token_type")
                    .map_err(meta_err)?,
            ),
        };
        let merges = match md.get("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => md
                .get_str_array("tokenizer.ggml.merges")
                .map_err(meta_err)?
                .into_iter()
                .map(String::from)
                .collect(),
        };
        let id = |k: &str| opt_id(md, &format!("tokenizer.ggml.{k}"));
        let flag = |k: &str| {
            md.opt_bool(&format!("tokenizer.ggml.{k}"))
                .map_err(meta_err)
        };
        Ok(TokenizerConfig {
            model,
            pre: md
                .opt_str("tokenizer.ggml.pre")
                .map_err(meta_err)?
                .map(String::from),
            tokens,
            scores,
            token_types,
            merges,
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            eot: id("eot_token_id")?,
            eom: id("eom_token_id")?,
            unk: id("unknown_token_id")?,
            sep: id("seperator_token_id")?,
            pad: id("padding_token_id")?,
            fim_pre: id("fim_pre_token_id")?.or(id("prefix_token_id")?),
            fim_suf: id("fim_suf_token_id")?.or(id("suffix_token_id")?),
            fim_mid: id("fim_mid_token_id")?.or(id("middle_token_id")?),
            fim_pad: id("fim_pad_token_id")?,
            fim_rep: id("fim_rep_token_id")?,
            fim_sep: id("fim_sep_token_id")?,
            add_bos: flag("add_bos_token")?,
            add_eos: flag("add_eos_token")?,
            add_space_prefix: flag("add_space_prefix")?,
            model_name: md
                .opt_str("general.name")
                .map_err(meta_err)?
                .map(String::from),
            chat_template: md
                .opt_str("tokenizer.chat_template")
                .map_err(meta_err)?
                .map(String::from),
        })
    }
}

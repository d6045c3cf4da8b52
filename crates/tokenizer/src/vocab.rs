//! Building a [`Tokenizer`] from a [`TokenizerConfig`]: token attributes,
//! special ids and the end-of-generation set, decided the way llama.cpp decides them.

use std::collections::{HashMap, HashSet};

use crate::bpe::BpeMerges;
use crate::pretok::{pre_config, PreKind, PreTokenizer};
use crate::unicode::char_to_byte;
use crate::{attr, Result, Tokenizer, TokenizerConfig, TokenizerError, TokenizerKind};

/// Texts llama.cpp recognises as end-of-turn when no eot id is given.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts that always end generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const FIM_PRE: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP: &[&str] = &["<|file_sep|>"];

fn attr_from_type(t: i32) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Longest token text repeated inside an `[UNK_BYTE_0x..]` marker.
const MAX_UNK_BYTE_ECHO: usize = 256;

/// `text` cut to a few dozen characters for an error message.
fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push_str("...");
    }
    s
}

/// GPT-2 byte-decoding of a token's text; characters outside the byte map are
/// kept visible in llama.cpp's `[UNK_BYTE_0x..]` form.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                // llama.cpp repeats the whole token text in every marker, quadratic in the
                // token's length: kept for ordinary tokens, left out for long ones.
                if text.len() <= MAX_UNK_BYTE_ECHO {
                    out.extend_from_slice(text.as_bytes());
                }
                out.push(b']');
            }
        }
    }
    out
}

fn parse_byte_token(text: &str) -> u8 {
    text.get(3..5)
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl Tokenizer {
    /// Builds a tokenizer from an explicit configuration.
    pub fn new(cfg: TokenizerConfig) -> Result<Tokenizer> {
        let n = cfg.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Metadata(
                "tokenizer.ggml.tokens is empty".into(),
            ));
        }
        let n_u32 = u32::try_from(n)
            .map_err(|_| TokenizerError::Metadata("vocabulary too large".into()))?;
        let kind = match cfg.model.as_str() {
            "gpt2" | "gemma4" => TokenizerKind::Bpe,
            "llama" => TokenizerKind::Spm,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        if let Some(s) = &cfg.scores {
            if s.len() < n {
                return Err(TokenizerError::Metadata(format!(
                    "{} scores for {n} tokens",
                    s.len()
                )));
            }
        }
        if let Some(t) = &cfg.token_types {
            if t.len() < n {
                return Err(TokenizerError::Metadata(format!(
                    "{} token types for {n} tokens",
                    t.len()
                )));
            }
        }

        let mut tokens = cfg.tokens;
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // llama.cpp asserts the same: two ids with one text cannot both be produced.
            if let Some(first) = token_to_id.insert(t.clone(), i as u32) {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.tokens: token {i} {:?} repeats token {first}",
                    excerpt(t)
                )));
            }
        }
        let scores = cfg.scores.map(|mut s| {
            s.truncate(n);
            s
        });
        let mut attrs: Vec<u32> = match &cfg.token_types {
            Some(types) => types[..n].iter().map(|&t| attr_from_type(t)).collect(),
            None => vec![attr::NORMAL; n],
        };

        let mut add_eos = false;
        let mut clean_spaces = false;
        let mut ignore_merges = false;
        let mut pre = None;
        let mut pre_name = String::new();
        // Defaults before metadata overrides, per vocabulary type.
        let gemma4_model = cfg.model == "gemma4";
        let (mut bos, eos, unk, mut add_bos, mut add_space_prefix) = match kind {
            TokenizerKind::Spm => (Some(1), Some(2), Some(0), true, true),
            TokenizerKind::Bpe if gemma4_model => (None, None, None, false, false),
            TokenizerKind::Bpe => (Some(11), Some(11), None, false, false),
        };
        let mut spm_style_bpe = false;
        match kind {
            TokenizerKind::Spm => {}
            TokenizerKind::Bpe => {
                let name = if gemma4_model {
                    "gemma4".to_string()
                } else {
                    cfg.pre.clone().unwrap_or_default()
                };
                let pc = match pre_config(&name) {
                    Some(pc) => pc,
                    None => {
                        eprintln!(
                            "warning: unknown pre-tokenizer '{name}' (tokenizer.ggml.pre); using 'default', token ids may differ from llama.cpp"
                        );
                        pre_config("default").expect("default pre-tokenizer exists")
                    }
                };
                if pc.no_bos {
                    bos = None;
                }
                clean_spaces = pc.clean_spaces;
                ignore_merges = pc.ignore_merges;
                spm_style_bpe = pc.kind == PreKind::Gemma4;
                add_bos = pc.add_bos;
                pre_name = if pc.kind == PreKind::Default {
                    "default".into()
                } else {
                    name
                };
                pre = Some(PreTokenizer::new(pc.kind)?);
            }
        }
        if let Some(v) = cfg.add_space_prefix {
            add_space_prefix = v;
        }

        let pick = |default: Option<u32>, given: Option<u32>| {
            let d = default.filter(|&d| d < n_u32);
            match given {
                Some(g) if g < n_u32 => Some(g),
                _ => d,
            }
        };
        let bos = pick(bos, cfg.bos);
        let eos = pick(eos, cfg.eos);
        let unk = pick(unk, cfg.unk);
        let mut eot = pick(None, cfg.eot);
        let mut eom = pick(None, cfg.eom);
        let pad = pick(None, cfg.pad);
        let sep = pick(None, cfg.sep);
        let (mut fim_pre, mut fim_suf, mut fim_mid) = (
            pick(None, cfg.fim_pre),
            pick(None, cfg.fim_suf),
            pick(None, cfg.fim_mid),
        );
        let (mut fim_pad, mut fim_rep, mut fim_sep) = (
            pick(None, cfg.fim_pad),
            pick(None, cfg.fim_rep),
            pick(None, cfg.fim_sep),
        );
        if let Some(v) = cfg.add_bos {
            add_bos = v;
        }
        if let Some(v) = cfg.add_eos {
            add_eos = v;
        }
        // Gemma 4 files may say otherwise, but the model needs BOS (as in llama.cpp).
        if spm_style_bpe {
            add_bos = true;
        }

        // Unset special ids are found by their text; such tokens become control
        // tokens even if the file says otherwise.
        for (id, text) in tokens.iter().enumerate() {
            let id = id as u32;
            let mut found = false;
            for (slot, texts) in [
                (&mut eot, EOT_TEXTS),
                (&mut eom, &["<|eom_id|>"][..]),
                (&mut fim_pre, FIM_PRE),
                (&mut fim_suf, FIM_SUF),
                (&mut fim_mid, FIM_MID),
                (&mut fim_pad, FIM_PAD),
                (&mut fim_rep, FIM_REP),
                (&mut fim_sep, FIM_SEP),
            ] {
                if slot.is_none() && texts.contains(&text.as_str()) {
                    *slot = Some(id);
                    found = true;
                }
            }
            if found {
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        for (id, text) in tokens.iter().enumerate() {
            if attrs[id] & attr::CONTROL != 0 && text.contains("unused") {
                attrs[id] |= attr::UNUSED;
            }
        }

        let mut eog: HashSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for (id, text) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&text.as_str()) {
                eog.insert(id as u32);
                attrs[id] |= attr::CONTROL;
            }
            // gpt-oss channel markers are always rendered.
            if matches!(
                text.as_str(),
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) {
                attrs[id] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        let with_text =
            |eog: &HashSet<u32>, t: &str| eog.iter().copied().find(|&id| tokens[id as usize] == t);
        // Harmony-style vocabularies: "<|end|>" separates messages, it does not stop.
        if let Some(end) = with_text(&eog, "<|end|>") {
            let has = |t: &str| with_text(&eog, t).is_some();
            let has_call = has("<|call|>") || has("<|calls|>");
            if has_call && (has("<|return|>") || has("<|flush|>")) {
                eog.remove(&end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        if let Some(s) = with_text(&eog, "</s>") {
            if with_text(&eog, "<|tool_response>").is_some()
                || with_text(&eog, "<|plamo:eos|>").is_some()
            {
                eog.remove(&s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        let mut special_tokens: Vec<u32> = (0..n_u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_tokens.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()));

        let pieces: Vec<Vec<u8>> = (0..n)
            .map(|id| {
                let a = attrs[id];
                let text = &tokens[id];
                if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                    text.as_bytes().to_vec()
                } else if a & attr::NORMAL != 0 {
                    match kind {
                        TokenizerKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                        TokenizerKind::Bpe if spm_style_bpe => {
                            text.replace('\u{2581}', " ").into_bytes()
                        }
                        TokenizerKind::Bpe => decode_byte_level(text),
                    }
                } else if a & attr::BYTE != 0 {
                    vec![parse_byte_token(text)]
                } else {
                    Vec::new()
                }
            })
            .collect();

        let name = cfg.model_name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                attrs[id as usize] |= attr::RSTRIP;
            }
            let mut set = |t: &str, on: bool| {
                if let Some(&id) = token_to_id.get(t) {
                    if on {
                        attrs[id as usize] |= attr::RSTRIP;
                    } else {
                        attrs[id as usize] &= !attr::RSTRIP;
                    }
                }
            };
            set("</s>", true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(t, false);
            }
        }

        let bpe = match kind {
            TokenizerKind::Bpe => {
                if cfg.merges.is_empty() {
                    return Err(TokenizerError::Metadata(
                        "BPE vocabulary without tokenizer.ggml.merges".into(),
                    ));
                }
                Some(BpeMerges::new(
                    cfg.merges.iter().map(String::as_str),
                    &token_to_id,
                    n_u32,
                ))
            }
            TokenizerKind::Spm => None,
        };
        let special_matcher = crate::special::SpecialMatcher::new(&tokens, &special_tokens);

        Ok(Tokenizer {
            kind,
            pre_name,
            tokens,
            scores: scores.unwrap_or_else(|| vec![0.0; n]),
            attrs,
            token_to_id,
            pieces,
            special_tokens,
            special_matcher,
            eog,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            sep,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            ignore_merges,
            spm_style_bpe,
            pre,
            bpe,
            chat_template: cfg.chat_template,
        })
    }
}

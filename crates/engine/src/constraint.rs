//! Constrained decoding: output that matches a JSON Schema, any JSON object, or a Lark
//! grammar. The constraint engine is `llguidance` (the one llama.cpp and mistral.rs use); this
//! file adapts our tokenizer to its token trie and turns its token mask into `-inf` logits, so
//! the sampler chain itself stays llama.cpp's.
//!
//! Per model, [`Grammars`] holds the trie and the parser factory (built once: the trie of a
//! 262k vocabulary takes a while). [`Grammars::compile`] checks and compiles a
//! [`ConstraintSpec`] into a [`Constraint`], which a [`crate::GenerateOptions`] carries; every
//! generation starts from its own clone of it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use tokenizer::Tokenizer;

use crate::error::EngineError;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintSpec {
    /// A JSON Schema (draft 2020-12 keywords as llguidance supports them).
    JsonSchema(serde_json::Value),
    /// Any JSON object (OpenAI's `json_object` mode).
    JsonObject,
    /// A Lark grammar in llguidance's dialect (`start: ...`, `%json {...}` allowed inside).
    Lark(String),
}

impl ConstraintSpec {
    /// Reads a `--json-schema` argument: inline JSON when it parses as such, else a file.
    pub fn json_schema_arg(arg: &str) -> Result<ConstraintSpec, EngineError> {
        let text = if arg.trim_start().starts_with('{') {
            arg.to_string()
        } else {
            std::fs::read_to_string(arg).map_err(|e| {
                EngineError::Constraint(format!("cannot read JSON schema file {arg}: {e}"))
            })?
        };
        let value = serde_json::from_str(&text)
            .map_err(|e| EngineError::Constraint(format!("JSON schema is not valid JSON: {e}")))?;
        Ok(ConstraintSpec::JsonSchema(value))
    }

    /// Reads a `--grammar` file (Lark).
    pub fn lark_file(path: &str) -> Result<ConstraintSpec, EngineError> {
        std::fs::read_to_string(path)
            .map(ConstraintSpec::Lark)
            .map_err(|e| EngineError::Constraint(format!("cannot read grammar file {path}: {e}")))
    }

    fn grammar(&self) -> Result<TopLevelGrammar, EngineError> {
        Ok(match self {
            ConstraintSpec::JsonSchema(v) => {
                if !v.is_object() && !v.is_boolean() {
                    return Err(EngineError::Constraint(format!(
                        "a JSON schema must be an object or a boolean, got {}",
                        json_kind(v)
                    )));
                }
                TopLevelGrammar::from_json_schema(bounded_whitespace(v.clone()))
            }
            ConstraintSpec::JsonObject => TopLevelGrammar::from_json_schema(bounded_whitespace(
                serde_json::json!({"type": "object"}),
            )),
            ConstraintSpec::Lark(g) => {
                if g.trim().is_empty() {
                    return Err(EngineError::Constraint("the grammar is empty".into()));
                }
                TopLevelGrammar::from_lark(g.clone())
            }
        })
    }
}

/// Whitespace allowed between JSON tokens, bounded as llama.cpp's schema grammars bound it:
/// one or two blanks, or up to two line breaks and an indent (16 spaces or 4 tabs at most).
/// llguidance's default is any run of whitespace, and a small model sampled at temperature 1
/// then emits blank lines until it runs out of tokens. A schema with its own `x-guidance`
/// options keeps them.
const JSON_WHITESPACE: &str = r"\x20{1,2}|(?:\x0D?\x0A){1,2}(?:\x20{0,16}|\x09{0,4})";

/// `schema` with the bounded whitespace every schema compiled here gets, for a schema a
/// caller embeds in a Lark grammar (`%json {...}`) itself.
pub fn bounded_whitespace(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance")
            .or_insert_with(|| serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }));
    }
    schema
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Our tokenizer as llguidance sees it: every token's bytes exactly as the detokenizer emits
/// them, control tokens marked special (0xFF prefix, llguidance's convention) so a grammar can
/// never produce them as text, and every end-of-generation token counted as EOS.
struct VocabEnv {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Used only for forced-token and prompt helpers; our encoder is canonical for text,
        // the trie's greedy split covers bytes that are not UTF-8.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text, false, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// The grammar compiler of one model's vocabulary.
pub struct Grammars {
    factory: ParserFactory,
    n_vocab: usize,
}

impl Grammars {
    pub(crate) fn new(tokenizer: &Arc<Tokenizer>) -> Result<Grammars, EngineError> {
        let n_vocab = tokenizer.vocab_size();
        let eog = tokenizer.eog_ids();
        let Some(&first_eog) = eog.first() else {
            return Err(EngineError::Constraint(
                "the model has no end-of-generation token, so constrained output cannot end".into(),
            ));
        };
        let eos = tokenizer.eos().unwrap_or(first_eog);
        let mut words = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab as u32 {
            let bytes = if tokenizer.is_control(id) {
                let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                w.extend(tokenizer.token_to_piece(id, true).unwrap_or_default());
                w
            } else {
                tokenizer.token_to_piece(id, false).unwrap_or_default()
            };
            words.push(bytes);
        }
        let mut info = TokRxInfo::new(n_vocab as u32, eos);
        info.tok_bos = tokenizer.bos();
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(VocabEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| EngineError::Constraint(format!("building the token trie: {e}")))?;
        // The engine never prints; grammar warnings would go to stderr otherwise.
        factory.quiet();
        Ok(Grammars { factory, n_vocab })
    }

    /// Checks and compiles `spec`. Errors name the problem (bad JSON Schema keyword, Lark
    /// syntax error with its line, unsupported feature).
    pub fn compile(&self, spec: &ConstraintSpec) -> Result<Constraint, EngineError> {
        let grammar = spec.grammar()?;
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| EngineError::Constraint(first_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(EngineError::Constraint(first_line(&e)));
        }
        Ok(Constraint {
            matcher,
            n_vocab: self.n_vocab,
            spec: Arc::new(spec.clone()),
        })
    }
}

/// llguidance appends its grammar dump to some messages; the first lines say what is wrong.
fn first_line(msg: &str) -> String {
    let mut out: String = msg.lines().take(3).collect::<Vec<_>>().join(" ");
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// A compiled constraint in its start state. Cloning is cheap (the lexer and grammar are
/// shared); each generation runs its own clone.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    n_vocab: usize,
    spec: Arc<ConstraintSpec>,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl Constraint {
    pub fn spec(&self) -> &ConstraintSpec {
        &self.spec
    }

    pub(crate) fn start(&self) -> ActiveConstraint {
        ActiveConstraint {
            matcher: self.matcher.clone(),
            n_vocab: self.n_vocab,
            masked: Vec::new(),
            ready: None,
            mask_time: Duration::ZERO,
            masks: 0,
        }
    }
}

/// One generation's constraint state: masks each step's logits, then learns the sampled token.
pub(crate) struct ActiveConstraint {
    matcher: Matcher,
    n_vocab: usize,
    /// Reused buffer of masked logits.
    masked: Vec<f32>,
    /// The next step's mask, computed ahead by [`ActiveConstraint::prepare`].
    ready: Option<Result<SimpleVob, String>>,
    /// Time spent computing masks, for `bench`.
    pub mask_time: Duration,
    pub masks: usize,
}

impl ActiveConstraint {
    /// `logits` with every token the grammar forbids at this point set to `-inf`. Once the
    /// grammar is complete only end-of-generation tokens are allowed, so generation ends the
    /// way an unconstrained one does (with the model's own EOS in the ids).
    pub fn mask(&mut self, logits: &[f32]) -> Result<&[f32], EngineError> {
        let mask = match self.ready.take() {
            Some(m) => m,
            None => self.compute(),
        }
        .map_err(|e| EngineError::Constraint(format!("computing the token mask: {e}")))?;
        self.masked.clear();
        self.masked.extend_from_slice(logits);
        apply(&mask, self.n_vocab, &mut self.masked);
        if self.masked.iter().all(|l| *l == f32::NEG_INFINITY) {
            return Err(EngineError::Constraint(
                "the grammar allows no token at this point".into(),
            ));
        }
        Ok(&self.masked)
    }

    /// Computes the next step's mask now: the decode loops call this on a helper thread
    /// while the forward pass that produces the step's logits runs, so the mask costs no time
    /// on the critical path (where cores are free).
    pub fn prepare(&mut self) {
        if self.ready.is_none() {
            self.ready = Some(self.compute());
        }
    }

    fn compute(&mut self) -> Result<SimpleVob, String> {
        let t0 = Instant::now();
        let r = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string());
        self.mask_time += t0.elapsed();
        self.masks += 1;
        r
    }

    /// Advances the grammar past the sampled token.
    pub fn commit(&mut self, id: u32) -> Result<(), EngineError> {
        if self.matcher.is_stopped() {
            // Only EOS was allowed; the generation ends with it.
            return Ok(());
        }
        self.matcher
            .consume_token(id)
            .map_err(|e| EngineError::Constraint(format!("token {id} rejected: {e}")))
    }
}

/// Sets disallowed logits to `-inf`; ids past the tokenizer's vocabulary (a padded output
/// layer) are never allowed.
fn apply(mask: &SimpleVob, n_vocab: usize, logits: &mut [f32]) {
    for (id, l) in logits.iter_mut().enumerate() {
        if id >= n_vocab || !mask.is_allowed(id as TokenId) {
            *l = f32::NEG_INFINITY;
        }
    }
}

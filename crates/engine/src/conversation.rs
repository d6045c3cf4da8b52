//! A multi-turn chat: the messages, rendered with the model's chat template each turn, and the
//! bookkeeping that lets a [`Session`] keep its KV cache across turns (only the tokens the new
//! rendering adds are processed).

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::model::LoadedModel;
use crate::session::Session;
use crate::thinking::{ThinkingSplitter, ThinkingTags};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant` (the system prompt is kept apart, see [`Conversation::system`]).
    pub role: String,
    pub content: String,
    /// An assistant's reasoning trace, kept apart from its answer. Templates receive it as
    /// `reasoning_content` and decide themselves: Qwen3's re-inserts recent traces, DeepSeek-R1's
    /// and templates that know nothing of reasoning leave past traces out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

/// The messages of a chat and its system prompt. Serializes to JSON for save/load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

impl Conversation {
    pub fn new(system: Option<String>) -> Self {
        Conversation {
            system: system.filter(|s| !s.is_empty()),
            messages: Vec::new(),
        }
    }

    pub fn push_user(&mut self, content: impl Into<String>) {
        self.messages.push(Message {
            role: "user".into(),
            content: content.into(),
            reasoning: None,
        });
    }

    pub fn push_assistant(&mut self, content: impl Into<String>, reasoning: Option<String>) {
        self.messages.push(Message {
            role: "assistant".into(),
            content: content.into(),
            reasoning: reasoning.filter(|r| !r.is_empty()),
        });
    }

    /// Forgets the messages; the system prompt stays.
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Number of user turns.
    pub fn turns(&self) -> usize {
        self.messages.iter().filter(|m| m.role == "user").count()
    }

    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses what [`Conversation::to_json`] wrote, checking roles and order.
    pub fn from_json(text: &str) -> Result<Self, EngineError> {
        let conv: Conversation = serde_json::from_str(text)
            .map_err(|e| EngineError::InvalidParam(format!("conversation: not valid JSON: {e}")))?;
        for (i, m) in conv.messages.iter().enumerate() {
            if m.role != "user" && m.role != "assistant" {
                return Err(EngineError::InvalidParam(format!(
                    "conversation: message {i} has role {:?}; expected user or assistant",
                    m.role
                )));
            }
        }
        Ok(conv)
    }

    /// The messages as the JSON list chat templates expect (system first when set).
    pub fn messages_json(&self) -> String {
        let mut list = Vec::new();
        if let Some(sys) = &self.system {
            list.push(serde_json::json!({"role": "system", "content": sys}));
        }
        for m in &self.messages {
            let mut v = serde_json::json!({"role": m.role, "content": m.content});
            if let Some(r) = &m.reasoning {
                v["reasoning_content"] = serde_json::Value::from(r.as_str());
            }
            list.push(v);
        }
        serde_json::Value::from(list).to_string()
    }
}

/// What [`LoadedModel::prepare_turn`] decided for the next answer.
#[derive(Debug, Clone)]
pub struct TurnPrompt {
    /// The rendered conversation, ending with the assistant's generation prompt.
    pub text: String,
    /// Its tokens.
    pub ids: Vec<u32>,
    /// Leading ids the session already holds; feed `ids[skip..]`.
    pub skip: usize,
    /// Positions of the KV cache kept from earlier turns (what the new prompt does not
    /// recompute).
    pub reused: usize,
    /// The template opened a reasoning trace at the end of the prompt.
    pub starts_in_trace: bool,
}

impl TurnPrompt {
    /// The ids to hand to [`Session::generate`].
    pub fn new_ids(&self) -> &[u32] {
        &self.ids[self.skip..]
    }
}

impl LoadedModel {
    /// The reasoning markers when this is a reasoning model (`<think>`/`</think>` as tokens).
    pub fn thinking_tags(&self) -> Option<ThinkingTags> {
        ThinkingTags::from_vocab(self.tokenizer())
    }

    /// Renders `conv` with the model's chat template (or the architecture's fallback), with
    /// the assistant's generation prompt at the end when `add_generation_prompt`.
    pub fn render_conversation(
        &self,
        conv: &Conversation,
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        self.render_messages_json(&conv.messages_json(), add_generation_prompt, None)
    }

    /// Renders an OpenAI-style message list (`[{"role": .., "content": ..}, ..]` as JSON
    /// text, roles as the template allows) with the model's chat template; `extra` is a JSON
    /// object of template variables (e.g. `{"enable_thinking": false}`). For servers, whose
    /// clients send whole histories.
    pub fn render_messages_json(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
        extra: Option<&str>,
    ) -> Result<String, EngineError> {
        let tok = self.tokenizer();
        let template = tok
            .chat_template()
            .unwrap_or_else(|| tok.fallback_chat_template(self.arch()));
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i).ok()).unwrap_or("");
        let opts = tokenizer::ChatOptions {
            add_generation_prompt,
            bos_token: text(tok.bos()),
            eos_token: text(tok.eos()),
            extra,
            ..Default::default()
        };
        tokenizer::render_chat_json(template, messages_json, &opts)
            .map_err(|e| EngineError::Tokenizer(format!("chat template: {e}")))
    }

    /// The chat template's source (the file's or `--chat-template-file`'s), if any: front ends
    /// read the conventions it follows (e.g. which tool-call syntax it teaches the model).
    pub fn chat_template(&self) -> Option<&str> {
        self.tokenizer().chat_template()
    }

    /// Whether the chat template renders a `tools` list itself (Qwen, Hermes, Llama 3.1+,
    /// Mistral templates do); otherwise a server describes the tools in a system message.
    pub fn chat_template_handles_tools(&self) -> bool {
        self.tokenizer()
            .chat_template()
            .is_some_and(|t| t.contains("tools"))
    }

    /// Token ids of a rendered chat prompt (special tokens parsed, BOS as the template has
    /// it).
    pub fn tokenize_chat_prompt(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer()
            .encode_chat_prompt(text)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Renders `conv` for the next answer and points `session` at the part it lacks: the
    /// cached prefix it shares with the rendering is kept, the rest is dropped from the cache.
    /// Generate with `session.generate(prompt.new_ids(), ..)`.
    pub fn prepare_turn(
        &self,
        session: &mut Session,
        conv: &Conversation,
    ) -> Result<TurnPrompt, EngineError> {
        let text = self.render_conversation(conv, true)?;
        let ids = self
            .tokenizer()
            .encode_chat_prompt(&text)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let skip = session.reuse_prefix(&ids);
        let starts_in_trace = self
            .thinking_tags()
            .is_some_and(|t| t.prompt_opens_trace(&text));
        Ok(TurnPrompt {
            reused: session.position(),
            text,
            ids,
            skip,
            starts_in_trace,
        })
    }

    /// A splitter for the answer to `prompt`; `None` for models without reasoning markers.
    pub fn thinking_splitter(&self, prompt: &TurnPrompt) -> Option<ThinkingSplitter> {
        self.thinking_tags()
            .map(|t| ThinkingSplitter::new(t, prompt.starts_in_trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_checks() {
        let mut c = Conversation::new(Some("Be brief.".into()));
        c.push_user("hi");
        c.push_assistant("hello", Some("greet back".into()));
        c.push_user("bye");
        assert_eq!(c.turns(), 2);
        let back = Conversation::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        let err = Conversation::from_json(r#"{"messages":[{"role":"tool","content":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("role \"tool\""), "{err}");
        assert!(Conversation::from_json("[1,2").is_err());
        c.clear();
        assert_eq!((c.turns(), c.system.as_deref()), (0, Some("Be brief.")));
    }

    #[test]
    fn template_sees_system_and_reasoning() {
        let mut c = Conversation::new(Some("S".into()));
        c.push_user("q");
        c.push_assistant("a", Some("r".into()));
        let v: serde_json::Value = serde_json::from_str(&c.messages_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"role": "system", "content": "S"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "reasoning_content": "r"},
            ])
        );
        assert_eq!(Conversation::new(Some(String::new())).system, None);
    }

    #[test]
    fn templates_decide_about_past_traces() {
        let mut c = Conversation::new(None);
        c.push_user("q");
        c.push_assistant("a", Some("r".into()));
        c.push_user("q2");
        let render = |t: &str| {
            tokenizer::render_chat_json(t, &c.messages_json(), &Default::default()).unwrap()
        };
        // A Qwen3-style template re-inserts the trace it is given ...
        let keeps = "{% for m in messages %}{{ m.role }}:{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}|{% endfor %}";
        assert_eq!(render(keeps), "user:q|assistant:<think>r</think>a|user:q2|");
        // ... one that knows nothing of reasoning (or strips it, as DeepSeek-R1's) shows none.
        let plain = "{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}";
        assert_eq!(render(plain), "user:q|assistant:a|user:q2|");
    }
}

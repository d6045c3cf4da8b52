//! Chat: messages rendered with the model's chat template, reasoning traces kept apart from
//! answers. [`Chat`] keeps its KV cache across turns; [`Model::reply`] answers a whole
//! history at once (the shape of OpenAI's API, where clients send every message each time).

use engine::{Conversation, GenerateOptions, Segment, Session};

use crate::model::{run, Completion, Model};
use crate::Error;

/// An assistant's answer.
#[derive(Debug, Clone)]
pub struct ChatReply {
    /// The answer, reasoning trace and its markers left out.
    pub content: String,
    /// The reasoning trace of a reasoning model (`<think>…</think>`), when it wrote one.
    pub reasoning: Option<String>,
    /// Prompt tokens that were already in the KV cache from earlier turns.
    pub reused_tokens: usize,
    /// The raw generation: every token, the full text, stats.
    pub completion: Completion,
}

/// A multi-turn chat with one model: the conversation and a session whose KV cache holds it,
/// so each turn processes only its new tokens.
///
/// ```no_run
/// use torchless::{GenerateOptions, Model, Segment};
/// # fn main() -> Result<(), torchless::Error> {
/// let model = Model::load("Qwen3-0.6B-Q8_0.gguf")?;
/// let mut chat = model.chat(None)?;
/// let reply = chat.send("Why is the sky blue?", &GenerateOptions::default(), |segment| {
///     if let Segment::Answer(text) = segment {
///         print!("{text}"); // the trace arrives as Segment::Reasoning
///     }
///     true
/// })?;
/// eprintln!("\nthought: {:?}", reply.reasoning);
/// # Ok(()) }
/// ```
pub struct Chat<'m> {
    model: &'m Model,
    session: Session,
    conversation: Conversation,
}

impl<'m> Chat<'m> {
    pub(crate) fn new(model: &'m Model, system: Option<&str>) -> Result<Self, Error> {
        Ok(Chat {
            model,
            session: model.session()?,
            conversation: Conversation::new(system.map(str::to_string)),
        })
    }

    /// Sends `user`'s message and generates the answer; `on_segment` sees the answer and
    /// the reasoning as they stream (return `false` to stop; the partial answer is kept).
    /// On an error the message is taken back out of the conversation.
    pub fn send(
        &mut self,
        user: &str,
        opts: &GenerateOptions,
        on_segment: impl FnMut(&Segment) -> bool,
    ) -> Result<ChatReply, Error> {
        self.conversation.push_user(user);
        match answer(
            self.model,
            &mut self.session,
            &self.conversation,
            opts,
            on_segment,
        ) {
            Ok(reply) => {
                self.conversation
                    .push_assistant(reply.content.clone(), reply.reasoning.clone());
                Ok(reply)
            }
            Err(e) => {
                self.conversation.messages.pop();
                Err(e)
            }
        }
    }

    /// The messages so far (serializable with [`Conversation::to_json`]).
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Forgets the messages (the system prompt stays) and empties the cache.
    pub fn clear(&mut self) {
        self.conversation.clear();
        self.session.reset();
    }
}

impl Model {
    /// The assistant's answer to `conversation` (its last message is the user's), in a
    /// session of its own.
    pub fn reply(
        &self,
        conversation: &Conversation,
        opts: &GenerateOptions,
        on_segment: impl FnMut(&Segment) -> bool,
    ) -> Result<ChatReply, Error> {
        let mut session = self.session()?;
        answer(self, &mut session, conversation, opts, on_segment)
    }

    /// [`Model::reply`] in a session kept by the caller: the part of its KV cache that the
    /// rendered conversation shares is kept (an API client resending a growing history pays
    /// only for the new messages), the rest is recomputed.
    pub fn reply_in(
        &self,
        session: &mut Session,
        conversation: &Conversation,
        opts: &GenerateOptions,
        on_segment: impl FnMut(&Segment) -> bool,
    ) -> Result<ChatReply, Error> {
        answer(self, session, conversation, opts, on_segment)
    }
}

/// Renders the conversation, feeds what the session lacks, and splits the output into
/// reasoning and answer as it streams.
fn answer(
    model: &Model,
    session: &mut Session,
    conversation: &Conversation,
    opts: &GenerateOptions,
    mut on_segment: impl FnMut(&Segment) -> bool,
) -> Result<ChatReply, Error> {
    let lm = model.engine();
    let prompt = lm.prepare_turn(session, conversation)?;
    let mut splitter = lm.thinking_splitter(&prompt);
    let mut keep_going = true;
    let completion = run(session, prompt.new_ids(), opts, |event| {
        let segments = match &mut splitter {
            Some(s) => s.push(event.id, &event.text),
            None if event.text.is_empty() => Vec::new(),
            None => vec![Segment::Answer(event.text.clone())],
        };
        for segment in &segments {
            keep_going &= on_segment(segment);
        }
        keep_going
    })?;
    let (content, reasoning) = match &mut splitter {
        Some(s) => {
            for segment in &s.finish() {
                on_segment(segment);
            }
            let reasoning = Some(s.reasoning().to_string()).filter(|r| !r.is_empty());
            (s.answer().to_string(), reasoning)
        }
        None => (completion.text.clone(), None),
    };
    Ok(ChatReply {
        content,
        reasoning,
        reused_tokens: prompt.reused,
        completion,
    })
}

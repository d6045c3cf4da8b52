//! Chat templates: the model's Jinja template (`tokenizer.chat_template`)
//! rendered with minijinja the way Hugging Face `apply_chat_template` renders it
//! (`trim_blocks` and `lstrip_blocks` on, Python string/dict methods available),
//! or a built-in template chosen by architecture when the file has none.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::{chat_guard, Result, Tokenizer, TokenizerError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Everything a template can see besides the messages.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions<'a> {
    pub add_generation_prompt: bool,
    pub bos_token: &'a str,
    pub eos_token: &'a str,
    /// Tool definitions as JSON text (an OpenAI-style list), exposed as `tools`.
    /// Text rather than parsed JSON so that key order, which templates print, is kept.
    pub tools: Option<&'a str>,
    /// Extra template variables as a JSON object text, e.g. `{"enable_thinking": false}`.
    pub extra: Option<&'a str>,
    /// Clock for `strftime_now` (Unix seconds, UTC); the current time when `None`.
    pub now_unix: Option<i64>,
}

/// Renders `template` with `messages`, `add_generation_prompt`, `bos_token` and `eos_token`.
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let msgs =
        serde_json::to_string(messages).map_err(|e| TokenizerError::Template(e.to_string()))?;
    render_chat_json(
        template,
        &msgs,
        &ChatOptions {
            add_generation_prompt,
            bos_token,
            eos_token,
            ..Default::default()
        },
    )
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str::<Value>(text)
        .map_err(|e| TokenizerError::Template(format!("{what} is not valid JSON: {e}")))
}

/// Like [`render_chat`] with the messages given as JSON text (a list of
/// objects, which may carry tool calls, names or structured content) and
/// optional tools. Object keys keep their order.
///
/// The render runs on a thread of its own: with a stack deep enough for the nesting minijinja
/// allows whatever the caller's stack is (async runtimes give 2 MiB), and so that a render
/// stopped for its memory (see [`crate::chat_guard`]) can be left behind.
pub fn render_chat_json(template: &str, messages_json: &str, opts: &ChatOptions) -> Result<String> {
    let key = chat_guard::template_key(template);
    if let Some(e) = chat_guard::stopped_before(key) {
        return Err(e);
    }
    let (template, messages) = (template.to_owned(), messages_json.to_owned());
    let (bos, eos) = (opts.bos_token.to_owned(), opts.eos_token.to_owned());
    let (tools, extra) = (opts.tools.map(str::to_owned), opts.extra.map(str::to_owned));
    let (add_generation_prompt, now_unix) = (opts.add_generation_prompt, opts.now_unix);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("chat-template".into())
        .stack_size(RENDER_STACK_BYTES)
        .spawn(move || {
            chat_guard::set_reply(tx, key);
            let opts = ChatOptions {
                add_generation_prompt,
                bos_token: &bos,
                eos_token: &eos,
                tools: tools.as_deref(),
                extra: extra.as_deref(),
                now_unix,
            };
            let r = render_here(&template, &messages, &opts);
            if let Some(tx) = chat_guard::take_reply() {
                let _ = tx.send(r);
            }
        })
        .map_err(|e| TokenizerError::Template(format!("could not start the renderer: {e}")))?;
    rx.recv().unwrap_or_else(|_| {
        Err(TokenizerError::Template(
            "the template renderer ended without a result".into(),
        ))
    })
}

/// Stack of a render thread: minijinja's parser allows 150 levels of nesting, each a dozen
/// frames deep; reserved address space, touched only as deep as a template goes.
const RENDER_STACK_BYTES: usize = 64 << 20;

fn render_here(template: &str, messages_json: &str, opts: &ChatOptions) -> Result<String> {
    let input = template.len()
        + messages_json.len()
        + opts.tools.map_or(0, str::len)
        + opts.extra.map_or(0, str::len);
    // Counted from here: compiling folds constant expressions (`'y' * 90000000`) too.
    let _guard = chat_guard::Armed::new(chat_guard::memory_budget().max(input.saturating_mul(16)));
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    minijinja_contrib::add_to_environment(&mut env);
    env.add_function("raise_exception", raise_exception);
    let now = opts.now_unix;
    env.add_function("strftime_now", move |format: String| {
        let secs = now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        strftime(secs, &format)
    });
    env.add_filter("tojson", crate::pyjson::tojson);
    env.add_filter("length", crate::pyjson::length);
    env.add_filter("count", crate::pyjson::length);
    env.add_filter("string", crate::pyjson::string);
    env.set_formatter(crate::pyjson::python_formatter);
    // A template is a program from the file: bounded in steps and depth (and in output and
    // memory below).
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(TEMPLATE_RECURSION);
    env.add_template("chat", template)
        .map_err(|e| TokenizerError::Template(describe(&e)))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| TokenizerError::Template(describe(&e)))?;
    let mut ctx: Vec<(String, Value)> = Vec::new();
    if let Some(extra) = opts.extra {
        let extra = parse_json("extra", extra)?;
        if extra.kind() != minijinja::value::ValueKind::Map {
            return Err(TokenizerError::Template(
                "extra variables must be a JSON object".into(),
            ));
        }
        let keys = extra
            .try_iter()
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        for key in keys {
            let v = extra.get_item(&key).unwrap_or_default();
            ctx.push((key.to_string(), v));
        }
    }
    ctx.push(("messages".into(), parse_json("messages", messages_json)?));
    ctx.push((
        "add_generation_prompt".into(),
        Value::from(opts.add_generation_prompt),
    ));
    ctx.push(("bos_token".into(), Value::from(opts.bos_token)));
    ctx.push(("eos_token".into(), Value::from(opts.eos_token)));
    if let Some(tools) = opts.tools {
        ctx.push(("tools".into(), parse_json("tools", tools)?));
    }
    let ctx: Value = ctx.into_iter().collect();
    let max_output = MAX_OUTPUT_BYTES.max(input.saturating_mul(4));
    let mut out = CappedOutput {
        buf: Vec::new(),
        cap: max_output,
        overflowed: false,
    };
    let r = tmpl.render_captured_to(ctx, &mut out);
    drop(_guard);
    match r {
        Ok(_) => String::from_utf8(out.buf)
            .map_err(|_| TokenizerError::Template("the template produced invalid UTF-8".into())),
        Err(_) if out.overflowed => Err(stopped(format!(
            "its output passed {} MiB",
            max_output >> 20
        ))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(stopped(format!(
            "it ran more than {TEMPLATE_FUEL} instructions (a loop that does not end?)"
        ))),
        Err(e) if e.to_string().contains("recursion limit exceeded") => Err(stopped(format!(
            "it nested calls or blocks deeper than {TEMPLATE_RECURSION} levels"
        ))),
        Err(e) => Err(TokenizerError::Template(describe(&e))),
    }
}

/// Instructions a template may run: a real template over a long conversation runs tens of
/// thousands; this is a fraction of a second of work (a few seconds in a fuzzing build).
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Nesting depth (minijinja counts a macro call as several levels).
pub const TEMPLATE_RECURSION: usize = 200;
/// Output size allowed whatever the input (more when the messages themselves are larger).
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// Memory a render may hold at once, checked by [`chat_guard::RenderAlloc`] when a program installs
/// it as its global allocator (more when the input is larger).
pub const MEMORY_BUDGET_BYTES: usize = 48 << 20;

fn stopped(why: String) -> TokenizerError {
    TokenizerError::Template(format!("the template was stopped: {why}"))
}

/// A `Write` that refuses to grow past `cap` bytes.
struct CappedOutput {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn strftime(unix: i64, format: &str) -> String {
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month_name = MONTHS[(month - 1) as usize];
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('j') => out.push_str(&format!("{:03}", doy_of(year, month, day))),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn doy_of(year: i64, month: i64, day: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    cum[(month - 1) as usize] + day + i64::from(leap && month > 2)
}

/// Gemma turn format; BOS is left to the tokenizer (`add_bos`).
pub const GEMMA_TEMPLATE: &str = "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
/// ChatML (Qwen, SmolLM, many fine-tunes).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/// LLaMA 3 header format; BOS is left to the tokenizer.
pub const LLAMA3_TEMPLATE: &str = "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
/// LLaMA 2 / Mistral `[INST]` format; a system message is folded into the first user turn.
pub const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set loop_messages = messages[1:] %}{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{% if loop.first and system %}[INST] <<SYS>>\n{{ system }}\n<</SYS>>\n\n{{ message['content'] | trim }} [/INST]{% else %}[INST] {{ message['content'] | trim }} [/INST]{% endif %}{% elif message['role'] == 'assistant' %} {{ message['content'] | trim }}{{ eos_token }}{% endif %}{% endfor %}";
/// Phi-3 format.
pub const PHI3_TEMPLATE: &str = "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

impl Tokenizer {
    /// The template used when the file has none, chosen by `general.architecture`
    /// (and by vocabulary for LLaMA): Gemma turns for gemma*, LLaMA 3 headers for
    /// llama vocabularies with `<|eot_id|>`, `[INST]` for other llama, Phi-3 for
    /// phi3, ChatML for everything else.
    pub fn fallback_chat_template(&self, arch: &str) -> &'static str {
        if arch.starts_with("gemma") {
            GEMMA_TEMPLATE
        } else if self.token_id("<|eot_id|>").is_some()
            && self.token_id("<|start_header_id|>").is_some()
        {
            LLAMA3_TEMPLATE
        } else if arch == "phi3" && self.token_id("<|end|>").is_some() {
            PHI3_TEMPLATE
        } else if self.token_id("<|im_start|>").is_some() {
            CHATML_TEMPLATE
        } else if arch == "llama" {
            LLAMA2_TEMPLATE
        } else {
            CHATML_TEMPLATE
        }
    }

    /// Renders a conversation with the model's template (or the fallback for
    /// `arch`). `bos_token`/`eos_token` are the vocabulary's texts. Templates
    /// that write `bos_token` themselves produce a prompt starting with BOS
    /// text; encode such a prompt with [`Tokenizer::encode_chat_prompt`].
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        arch: &str,
    ) -> Result<String> {
        let template = self
            .chat_template()
            .unwrap_or_else(|| self.fallback_chat_template(arch));
        let text = |id: Option<u32>| id.and_then(|i| self.token_text(i).ok()).unwrap_or("");
        render_chat(
            template,
            messages,
            add_generation_prompt,
            text(self.bos()),
            text(self.eos()),
        )
    }

    /// Tokenizes a rendered chat prompt with special tokens parsed, adding BOS
    /// only if the model wants one and the prompt does not already start with it.
    pub fn encode_chat_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(prompt, true, true)?;
        if self.add_bos() && ids.len() >= 2 && ids[0] == ids[1] && Some(ids[0]) == self.bos() {
            ids.remove(0);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        assert_eq!(
            strftime(0, "%Y-%m-%d %H:%M:%S %A"),
            "1970-01-01 00:00:00 Thursday"
        );
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(
            strftime(1_709_210_096, "%d %B %Y %b %a %j"),
            "29 February 2024 Feb Thu 060"
        );
    }

    #[test]
    fn chatml_with_generation_prompt() {
        let out = render_chat(CHATML_TEMPLATE, &[ChatMessage::user("hi")], true, "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let err = render_chat(
            "{{ raise_exception('no system role') }}",
            &[],
            false,
            "",
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn python_methods_work() {
        let t = "{% for m in messages %}{{ m.content.strip().upper() }}{% if m.role.startswith('us') %}!{% endif %}{% endfor %}";
        let out = render_chat(t, &[ChatMessage::user("  x ")], false, "", "").unwrap();
        assert_eq!(out, "X!");
    }
}

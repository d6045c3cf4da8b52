//! `torchless chat` (also `torchless --chat`): a multi-turn conversation. Each turn is rendered
//! with the model's chat template; the KV cache is kept across turns so only the new tokens are
//! processed. With a terminal: line editing, history, slash commands, Ctrl-C to stop an answer.
//! Without one (stdin piped): one message per input line, one answer per message, no escapes.

mod display;
mod slash;
mod tty;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::{
    Conversation, EngineError, GenerateOptions, LoadedModel, Session, StopReason, ThinkingTags,
};
use rustyline::error::ReadlineError;

use display::{AnswerDisplay, Style};
use slash::{Input, LineJoiner, Slash};

#[derive(clap::Args)]
#[command(after_help = "\
Every turn re-renders the whole conversation with the model's chat template (the \
architecture's usual format when the file has none); the part already in the KV cache is \
reused and only the new tokens are processed. The stats line after each answer shows both.\n\n\
Context: when the conversation no longer fits --max-seq-len, chat says so and asks for /clear \
(or a larger --max-seq-len). It never drops or truncates turns silently. An answer that fills \
the context mid-way ends there and says so.\n\n\
Reasoning models (vocabularies with <think> and </think> tokens: DeepSeek-R1 distills, QwQ, \
Qwen3) are recognised automatically. Their trace is hidden behind a \"thinking…\" indicator; \
--show-thinking or /thinking on shows it dimmed (plain, between <think> tags, when output is \
not a terminal or NO_COLOR is set). Past traces are handed to the template as \
reasoning_content, which keeps or drops them as the model expects.\n\n\
Without a terminal, each input line is one message (a line ending in \\ continues on the \
next); answers go to stdout, notes and statistics to stderr. Slash commands work there too.\n\n\
Slash commands: /help, /thinking on|off, /system TEXT, /clear, /save FILE, /load FILE, /stats, \
/exit. Ctrl-C stops the answer being written (the partial answer stays in the conversation); \
Ctrl-D leaves.\n\n\
--json-schema, --json-object and --grammar constrain every answer (a reasoning model's \
trace too: under a constraint it answers without one).")]
pub struct Args {
    /// Model: a .gguf path, owner/name[:QUANT] or owner/name/FILE.gguf on the Hugging Face hub
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    pub model: Option<String>,
    /// System prompt of the conversation
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Show a reasoning model's trace (dimmed) instead of hiding it
    #[arg(long)]
    pub show_thinking: bool,
    /// Most tokens per answer; -1 = until end-of-turn or a full context
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: super::args::SamplingArgs,
    #[command(flatten)]
    pub runtime: super::args::RuntimeArgs,
    #[command(flatten)]
    pub structured: super::structured::StructuredArgs,
    /// Print nothing but the answers: no load line, notes or statistics on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Use the Jinja chat template in FILE instead of the model's (as llama.cpp's flag)
    #[arg(long, value_name = "FILE")]
    pub chat_template_file: Option<std::path::PathBuf>,
}

/// Figures of one answer.
#[derive(Debug, Clone, Default)]
struct TurnStats {
    reused: usize,
    prompt_tokens: usize,
    prompt_time: Duration,
    generated: usize,
    gen_time: Duration,
    stop: Option<StopReason>,
    interrupted: bool,
    output_closed: bool,
}

fn tps(n: usize, t: Duration) -> f64 {
    if t.as_secs_f64() > 0.0 {
        n as f64 / t.as_secs_f64()
    } else {
        0.0
    }
}

struct Chat {
    lm: LoadedModel,
    session: Session,
    conv: Conversation,
    gen: GenerateOptions,
    tags: Option<ThinkingTags>,
    show_thinking: bool,
    style: Style,
    /// A terminal on both ends: echo is turned off while answers stream.
    interactive: bool,
    quiet: bool,
    /// Set by Ctrl-C while an answer is being written.
    interrupt: Arc<AtomicBool>,
    generating: Arc<AtomicBool>,
    last: Option<TurnStats>,
    total_new: usize,
    total_reused: usize,
}

/// What the loop does after an input.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Exit,
}

impl Chat {
    fn say(&self, text: &str) {
        // Notes go to stderr so stdout carries only answers when piped.
        if self.style.color {
            eprintln!("\x1b[2m{text}\x1b[22m");
        } else {
            eprintln!("{text}");
        }
    }

    fn context_line(&self) -> String {
        format!(
            "context {}/{}",
            self.session.position(),
            self.session.max_seq_len()
        )
    }

    fn input(&mut self, text: &str) -> Result<Next> {
        match slash::classify(text) {
            Input::Empty => Ok(Next::Continue),
            Input::Message(m) => self.answer(m),
            Input::Command(c) => self.command(c),
        }
    }

    fn command(&mut self, c: Slash) -> Result<Next> {
        match c {
            Slash::Help => self.say(slash::HELP),
            Slash::Exit => return Ok(Next::Exit),
            Slash::Thinking(on) => {
                if let Some(on) = on {
                    self.show_thinking = on;
                }
                let state = if self.show_thinking {
                    "shown"
                } else {
                    "hidden"
                };
                if self.tags.is_some() {
                    self.say(&format!("reasoning traces: {state}"));
                } else {
                    self.say(&format!(
                        "reasoning traces: {state} (this model has no <think> tokens, so there \
                         is nothing to show)"
                    ));
                }
            }
            Slash::System(None) => match &self.conv.system {
                Some(s) => self.say(&format!("system prompt: {s}")),
                None => self.say("no system prompt (the template's default applies)"),
            },
            Slash::System(Some(s)) => {
                self.conv.system = Some(s);
                self.say("system prompt set; it applies from the next answer on");
            }
            Slash::Clear => {
                self.conv.clear();
                self.say("new conversation");
            }
            Slash::Save(path) => match std::fs::write(&path, self.conv.to_json() + "\n") {
                Ok(()) => self.say(&format!("saved {} turns to {path}", self.conv.turns())),
                Err(e) => self.say(&format!("cannot write {path}: {e}")),
            },
            Slash::Load(path) => match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| Conversation::from_json(&t).map_err(|e| e.to_string()))
            {
                Ok(conv) => {
                    self.conv = conv;
                    self.say(&format!(
                        "loaded {} turns from {path}; the next answer continues it",
                        self.conv.turns()
                    ));
                }
                Err(e) => self.say(&format!("cannot load {path}: {e}")),
            },
            Slash::Stats => self.print_stats(),
            Slash::Usage(u) => self.say(u),
            Slash::Unknown(name) => self.say(&format!(
                "unknown command /{name}; /help lists the commands"
            )),
        }
        Ok(Next::Continue)
    }

    fn print_stats(&self) {
        match &self.last {
            Some(t) => self.say(&format!("last answer: {}", self.stats_line(t))),
            None => self.say("no answer yet"),
        }
        self.say(&format!(
            "conversation: {} turns, {} | prompt tokens processed {}, reused from the cache {}",
            self.conv.turns(),
            self.context_line(),
            self.total_new,
            self.total_reused
        ));
    }

    fn stats_line(&self, t: &TurnStats) -> String {
        let stop = match (t.interrupted, t.output_closed, t.stop) {
            (true, _, _) => "interrupted".to_string(),
            (_, true, _) => "output closed".to_string(),
            (_, _, Some(s)) => s.to_string(),
            (_, _, None) => "error".to_string(),
        };
        format!(
            "[prompt: {} new + {} reused tokens, {:.1} tok/s | answer: {} tokens, {:.1} tok/s | {} | stop: {stop}]",
            t.prompt_tokens,
            t.reused,
            tps(t.prompt_tokens, t.prompt_time),
            t.generated,
            tps(t.generated, t.gen_time),
            self.context_line(),
        )
    }

    /// `total`: tokens of the conversation rendered with the new message.
    fn context_full(&self, total: usize) {
        self.say(&format!(
            "the context is full: with this message the conversation takes {total} tokens, plus \
             the answer, and the context holds {}. /clear starts a new conversation (or restart \
             with a larger --max-seq-len)",
            self.session.max_seq_len()
        ));
    }

    /// Answers one user message; `Exit` when stdout has gone away (`| head`).
    fn answer(&mut self, user: String) -> Result<Next> {
        self.conv.push_user(user);
        let prompt = match self.lm.prepare_turn(&mut self.session, &self.conv) {
            Ok(p) => p,
            Err(e) => {
                self.conv.messages.pop();
                return Err(e.into());
            }
        };
        let new = prompt.new_ids().len();
        // The answer needs room for at least one generated token beyond the prompt.
        if self.session.position() + new >= self.session.max_seq_len() {
            self.conv.messages.pop();
            self.context_full(prompt.ids.len());
            return Ok(Next::Continue);
        }
        let splitter = self.lm.thinking_splitter(&prompt);
        let mut display = AnswerDisplay::new(
            std::io::stdout().lock(),
            self.style,
            self.show_thinking,
            splitter,
        );
        let _quiet = self.interactive.then(tty::QuietInput::new);
        self.interrupt.store(false, Ordering::SeqCst);
        self.generating.store(true, Ordering::SeqCst);
        let mut stats = TurnStats {
            reused: prompt.reused,
            ..Default::default()
        };
        let t0 = Instant::now();
        let result = (|| -> Result<(), EngineError> {
            let mut g = self.session.generate(prompt.new_ids(), &self.gen)?;
            stats.prompt_time = t0.elapsed();
            let t1 = Instant::now();
            loop {
                if self.interrupt.load(Ordering::SeqCst) {
                    stats.interrupted = true;
                    break;
                }
                let Some(ev) = g.next() else { break };
                let ev = ev?;
                stats.generated += 1;
                // A closed stdout (`| head`) ends the chat quietly, not with an error.
                if display.token(ev.id, &ev.text).is_err() {
                    stats.output_closed = true;
                    break;
                }
            }
            stats.gen_time = t1.elapsed();
            stats.prompt_tokens = g.prompt_tokens();
            stats.stop = g.stats().map(|st| st.stop);
            Ok(())
        })();
        self.generating.store(false, Ordering::SeqCst);
        let fin = display.finish().unwrap_or_default();
        let _ = writeln!(std::io::stdout());
        match result {
            Ok(()) => {}
            Err(EngineError::PromptTooLong { .. }) => {
                self.conv.messages.pop();
                self.context_full(prompt.ids.len());
                return Ok(Next::Continue);
            }
            Err(e) => {
                self.conv.messages.pop();
                return Err(e.into());
            }
        }
        // Kept even when interrupted: the cache holds it, and the user saw it.
        self.conv.push_assistant(fin.answer, fin.reasoning);
        self.total_new += stats.prompt_tokens;
        self.total_reused += stats.reused;
        if stats.interrupted {
            self.say("(interrupted; the partial answer stays in the conversation)");
        }
        if stats.stop == Some(StopReason::ContextFull) {
            self.say(
                "the context is full, the answer was cut there; /clear starts a new conversation",
            );
        }
        if !self.quiet {
            self.say(&self.stats_line(&stats));
        }
        let closed = stats.output_closed;
        self.last = Some(stats);
        Ok(if closed { Next::Exit } else { Next::Continue })
    }

    /// Runs one input, reporting errors without leaving the chat.
    fn input_or_report(&mut self, text: &str) -> Next {
        match self.input(text) {
            Ok(n) => n,
            Err(e) => {
                self.say(&format!("error: {e:#}"));
                Next::Continue
            }
        }
    }
}

fn max_tokens(n: i64) -> Result<Option<usize>> {
    match n {
        -1 => Ok(None),
        n if n >= 1 => Ok(Some(n as usize)),
        n => bail!("-n: must be at least 1, or -1 for no limit; got {n}"),
    }
}

pub fn run(args: Args) -> Result<()> {
    let sampling = args.sampling.params()?;
    let max_tokens = max_tokens(args.n_predict)?;
    let session_opts = args.runtime.session_options()?;
    let structured = args.structured.spec()?;
    let template = super::args::read_chat_template(args.chat_template_file.as_deref())?;
    let path = super::model_path(args.model.as_deref())?;
    let mut lm = args.runtime.load.load(&path, session_opts, args.quiet)?;
    if let Some(t) = template {
        lm.set_chat_template(t)?;
    }
    let session = lm.new_session(&session_opts)?;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let style = if interactive {
        Style::detect(true)
    } else {
        Style::PLAIN
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let generating = Arc::new(AtomicBool::new(false));
    {
        let (interrupt, generating) = (interrupt.clone(), generating.clone());
        // While an answer is written Ctrl-C stops it. Otherwise a piped chat leaves as usual,
        // and an interactive one ignores it: at its prompt the line editor reads Ctrl-C as a
        // key, and a stray press between answers should not end the conversation.
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                interrupt.store(true, Ordering::SeqCst);
            } else if !interactive {
                std::process::exit(130);
            }
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    let tags = lm.thinking_tags();
    let mut chat = Chat {
        tags,
        session,
        conv: Conversation::new(args.system.clone()),
        gen: GenerateOptions {
            max_tokens,
            sampling,
            stop: Vec::new(),
            logprobs: None,
            constraint: super::structured::compile(&lm, structured.as_ref())?,
            logit_bias: args.sampling.logit_bias(lm.n_vocab())?,
        },
        show_thinking: args.show_thinking,
        style,
        interactive,
        quiet: args.quiet,
        interrupt,
        generating,
        last: None,
        total_new: 0,
        total_reused: 0,
        lm,
    };
    if !chat.lm.has_chat_template() && !args.quiet {
        chat.say(&base_model_note(&path, chat.lm.arch()));
    }
    if interactive {
        repl(&mut chat, &path)
    } else {
        piped(&mut chat)
    }
}

/// Said when the file has no chat template, which is how base (not instruction-tuned) models
/// ship: they continue text rather than answer, so the user knows what to expect.
fn base_model_note(path: &std::path::Path, arch: &str) -> String {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    format!(
        "note: {name} has no chat template, so it is probably a base model: its answers will be \
         continuations of the conversation text (rendered in the usual {arch} format), not \
         replies. For chat, use an instruction-tuned model (names with -it, -Instruct or -chat)."
    )
}

/// Non-interactive: one message per line (backslash continues), until end of input.
fn piped(chat: &mut Chat) -> Result<()> {
    let mut joiner = LineJoiner::default();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        if let Some(text) = joiner.push(&line) {
            if chat.input_or_report(&text) == Next::Exit {
                return Ok(());
            }
        }
    }
    if let Some(text) = joiner.finish() {
        chat.input_or_report(&text);
    }
    Ok(())
}

fn repl(chat: &mut Chat, path: &std::path::Path) -> Result<()> {
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .bracketed_paste(true)
        .build();
    let mut editor = rustyline::DefaultEditor::with_config(config)
        .context("cannot set up line editing on this terminal")?;
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    chat.say(&format!(
        "torchless chat: {name} ({}, context {} tokens). /help lists commands, Ctrl-D leaves.",
        chat.lm.arch(),
        chat.session.max_seq_len()
    ));
    if chat.tags.is_some() {
        chat.say(&format!(
            "reasoning model: its trace is {} (/thinking on|off)",
            if chat.show_thinking {
                "shown"
            } else {
                "hidden"
            }
        ));
    }
    let mut joiner = LineJoiner::default();
    loop {
        let prompt = if joiner.continuing() { "… " } else { "> " };
        match editor.readline(prompt) {
            Ok(line) => {
                let Some(text) = joiner.push(&line) else {
                    continue;
                };
                if !text.trim().is_empty() {
                    let _ = editor.add_history_entry(text.as_str());
                }
                if chat.input_or_report(&text) == Next::Exit {
                    return Ok(());
                }
            }
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C at the prompt drops the line being typed, like a shell.
                joiner = LineJoiner::default();
                chat.say("(Ctrl-D or /exit leaves)");
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e).context("cannot read the terminal"),
        }
    }
}

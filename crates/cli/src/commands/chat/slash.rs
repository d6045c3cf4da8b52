//! Slash commands of the chat REPL and the assembly of input lines into messages.

pub const HELP: &str = "\
/help               this list
/thinking on|off    show or hide a reasoning model's trace (dimmed when shown)
/system [TEXT]      set the system prompt (without TEXT: show it)
/clear              start a new conversation (keeps the system prompt)
/save FILE          write the conversation as JSON
/load FILE          continue a conversation saved with /save
/stats              statistics of the last answer and of the conversation
/exit               leave (Ctrl-D too)
A line ending in \\ continues on the next line; // at the start sends a literal /.
Ctrl-C stops the answer being written; the partial answer stays in the conversation.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slash {
    Help,
    /// `None`: report the current setting.
    Thinking(Option<bool>),
    System(Option<String>),
    Clear,
    Save(String),
    Load(String),
    Stats,
    Exit,
    /// A known command with bad arguments: the message to show.
    Usage(&'static str),
    Unknown(String),
}

/// What one complete input is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Message(String),
    Command(Slash),
    Empty,
}

pub fn classify(text: &str) -> Input {
    let t = text.trim();
    if t.is_empty() {
        return Input::Empty;
    }
    if let Some(rest) = t.strip_prefix("//") {
        return Input::Message(format!("/{rest}"));
    }
    match t.strip_prefix('/') {
        Some(cmd) => Input::Command(parse(cmd)),
        None => Input::Message(t.to_string()),
    }
}

fn parse(cmd: &str) -> Slash {
    let (name, arg) = match cmd.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (cmd, ""),
    };
    let arg_opt = (!arg.is_empty()).then(|| arg.to_string());
    match name {
        "help" | "?" => Slash::Help,
        "thinking" => match arg {
            "" => Slash::Thinking(None),
            "on" => Slash::Thinking(Some(true)),
            "off" => Slash::Thinking(Some(false)),
            _ => Slash::Usage("usage: /thinking on|off"),
        },
        "system" => Slash::System(arg_opt),
        "clear" => Slash::Clear,
        "save" => arg_opt.map_or(Slash::Usage("usage: /save FILE"), Slash::Save),
        "load" => arg_opt.map_or(Slash::Usage("usage: /load FILE"), Slash::Load),
        "stats" => Slash::Stats,
        "exit" | "quit" | "bye" => Slash::Exit,
        other => Slash::Unknown(other.to_string()),
    }
}

/// Joins input lines: a line ending in `\` continues on the next one.
#[derive(Debug, Default)]
pub struct LineJoiner {
    parts: Vec<String>,
}

impl LineJoiner {
    /// Adds a line; returns the whole input once it is complete.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        match line.strip_suffix('\\') {
            Some(head) => {
                self.parts.push(head.to_string());
                None
            }
            None => {
                self.parts.push(line.to_string());
                Some(std::mem::take(&mut self.parts).join("\n"))
            }
        }
    }

    /// True while a continued input waits for its next line.
    pub fn continuing(&self) -> bool {
        !self.parts.is_empty()
    }

    /// What is left at end of input.
    pub fn finish(&mut self) -> Option<String> {
        self.continuing()
            .then(|| std::mem::take(&mut self.parts).join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let c = |s| match classify(s) {
            Input::Command(c) => c,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(c("/help"), Slash::Help);
        assert_eq!(c(" /thinking on "), Slash::Thinking(Some(true)));
        assert_eq!(c("/thinking off"), Slash::Thinking(Some(false)));
        assert_eq!(c("/thinking"), Slash::Thinking(None));
        assert_eq!(
            c("/thinking maybe"),
            Slash::Usage("usage: /thinking on|off")
        );
        assert_eq!(
            c("/system You are  terse."),
            Slash::System(Some("You are  terse.".into()))
        );
        assert_eq!(c("/system"), Slash::System(None));
        assert_eq!(c("/save a b.json"), Slash::Save("a b.json".into()));
        assert_eq!(c("/load"), Slash::Usage("usage: /load FILE"));
        assert_eq!(c("/clear"), Slash::Clear);
        assert_eq!(c("/stats"), Slash::Stats);
        assert_eq!(c("/exit"), Slash::Exit);
        assert_eq!(c("/frobnicate x"), Slash::Unknown("frobnicate".into()));
    }

    #[test]
    fn messages_and_escapes() {
        assert_eq!(classify("  hi there "), Input::Message("hi there".into()));
        assert_eq!(
            classify("//etc/passwd?"),
            Input::Message("/etc/passwd?".into())
        );
        assert_eq!(classify(" \t"), Input::Empty);
    }

    #[test]
    fn backslash_continues_lines() {
        let mut j = LineJoiner::default();
        assert_eq!(j.push("first\\"), None);
        assert!(j.continuing());
        assert_eq!(j.push("second\\\r"), None);
        assert_eq!(j.push("third"), Some("first\nsecond\nthird".into()));
        assert!(!j.continuing());
        assert_eq!(j.push("one"), Some("one".into()));
        assert_eq!(j.push("dangling\\"), None);
        assert_eq!(j.finish(), Some("dangling".into()));
        assert_eq!(j.finish(), None);
    }
}

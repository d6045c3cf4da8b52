//! `torchless chat` in a real terminal, driven through tmux (send-keys / capture-pane) on the
//! real SmolLM2: two turns, a slash command, Ctrl-C during an answer, Ctrl-D to leave.
//! tmux is required: .ci/run installs it, and a missing tmux fails this test loudly.

mod common;
use common::real_model;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own (socket in the temp dir), killed and removed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux is required for this test and could not run ({e}); install it")
            })
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "chat"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend(keys);
        self.ok(&args);
    }

    /// Sends `text` literally (no key-name lookup), then Enter.
    fn line(&self, text: &str) {
        self.ok(&["send-keys", "-t", "chat", "-l", text]);
        self.keys(&["Enter"]);
    }

    /// Polls the screen until `pred` holds; fails with the screen after `secs`.
    fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Tmux {
    /// Starts `torchless ARGS` in a fresh 160x50 terminal and waits for the banner.
    fn start(args: &str) -> Tmux {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmux = Tmux {
            socket: std::env::temp_dir().join(format!("torchless-tmux-{}-{n}", std::process::id())),
        };
        // The pane's shell reports the exit status itself: tmux can mark a pane dead before it
        // has reaped the process, and then never shows the status. The trap keeps that shell
        // alive through Ctrl-C (the child gets default signal handling back on exec).
        let cmd = format!(
            "trap : INT; {} {args}; echo \"[exited: $?]\"",
            env!("CARGO_BIN_EXE_torchless")
        );
        tmux.ok(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "160",
            "-y",
            "50",
        ]);
        tmux.ok(&["set-option", "-t", "chat", "remain-on-exit", "on"]);
        tmux.ok(&["respawn-pane", "-k", "-t", "chat", &cmd]);
        tmux.wait("the banner", 60, |s| {
            s.contains("/help lists commands") && s.contains("> ")
        });
        tmux
    }

    /// Waits for the program to end; returns its exit status as the shell reports it.
    fn exit_status(&self) -> String {
        let s = self.wait("the chat to exit", 10, |s| s.contains("[exited: "));
        let rest = &s[s.rfind("[exited: ").unwrap() + "[exited: ".len()..];
        rest[..rest.find(']').unwrap()].to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// (new, reused) prompt tokens of each answer's stats line.
fn prompt_counts(s: &str) -> Vec<(usize, usize)> {
    s.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("[prompt: ")?.split_whitespace();
            let new = w.next()?.parse().ok()?;
            let reused = w.nth(2)?.parse().ok()?;
            Some((new, reused))
        })
        .collect()
}

/// Stats lines printed after answers (not the copy `/stats` repeats).
fn answers(s: &str) -> usize {
    s.lines().filter(|l| l.starts_with("[prompt: ")).count()
}

#[test]
fn terminal_session_two_turns_slash_command_ctrl_c_and_exit() {
    let model = real_model("smollm2-135m-instruct-q4_1");
    let tmux = Tmux::start(&format!(
        "chat {} --temp 0 -n 400 --max-seq-len 2048",
        model.display()
    ));

    // Turn 1.
    tmux.line("Hello! Who are you?");
    let s = tmux.wait("the first answer", 120, |s| answers(s) == 1);
    // SmolLM2's greedy answer (as `torchless run` gives it).
    assert!(s.contains("I'm here to help"), "{s}");

    // A slash command.
    tmux.line("/stats");
    tmux.wait("/stats", 10, |s| s.contains("conversation: 1 turns"));

    // Turn 2, interrupted as soon as the answer starts streaming.
    tmux.line("Write a very long story about a dragon who learns to fly.");
    tmux.wait("the second answer to start", 120, |s| {
        let tail = s.rsplit("learns to fly.").next().unwrap_or("");
        tail.chars().any(|c| c.is_alphabetic())
    });
    tmux.keys(&["C-c"]);
    let s = tmux.wait("the interruption", 30, |s| {
        s.contains("(interrupted") && answers(s) == 2
    });
    assert!(s.contains("stop: interrupted"), "{s}");
    // Echo is off while an answer streams: no "^C" inside it.
    assert!(!s.contains("^C"), "{s}");

    // Still in the chat: a third turn reuses the cache of the first two.
    tmux.line("What is 2+2?");
    let s = tmux.wait("the third answer", 120, |s| answers(s) == 3);
    let counts = prompt_counts(&s);
    assert_eq!(counts.len(), 3, "{s}");
    // Turn 3 reuses at least both earlier prompts (the interrupted answer may re-tokenize
    // differently at its cut).
    let (new2, reused2) = counts[1];
    assert!(
        reused2 > counts[0].0,
        "turn 2 reuses turn 1's prompt and answer: {s}"
    );
    assert!(
        counts[2].1 >= new2 + reused2,
        "turn 3 reused too little: {s}"
    );
    assert!(counts[2].0 < 40, "turn 3 processed too much: {s}");

    // Ctrl-D leaves cleanly.
    tmux.keys(&["C-d"]);
    assert_eq!(tmux.exit_status(), "0", "{}", tmux.screen());
}

#[test]
fn terminal_paste_continuation_and_prompt_keys_on_the_fixture() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf");
    let dir = std::env::temp_dir().join(format!("torchless-tmux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("conv.json");
    let tmux = Tmux::start(&format!("chat {} --temp 0 -n 3", model.display()));
    // The fixture vocabulary has <think>/</think>: it counts as a reasoning model.
    tmux.wait("the reasoning note", 10, |s| {
        s.contains("its trace is hidden")
    });

    // A bracketed paste of two lines is one message.
    tmux.ok(&["set-buffer", "first line\nsecond line"]);
    tmux.ok(&["paste-buffer", "-p", "-t", "chat"]);
    tmux.keys(&["Enter"]);
    tmux.wait("answer 1", 30, |s| answers(s) == 1);
    // A trailing backslash continues the message.
    tmux.line("abc\\");
    tmux.wait("the continuation prompt", 10, |s| s.contains("… "));
    tmux.line("def");
    tmux.wait("answer 2", 30, |s| answers(s) == 2);

    // Ctrl-C at the prompt drops the typed line and stays.
    tmux.ok(&["send-keys", "-t", "chat", "-l", "half typed"]);
    tmux.keys(&["C-c"]);
    tmux.wait("the Ctrl-C hint", 10, |s| {
        s.contains("(Ctrl-D or /exit leaves)")
    });
    tmux.line("/nope");
    tmux.wait("the unknown-command hint", 10, |s| {
        s.contains("unknown command /nope; /help lists the commands")
    });
    tmux.line("/thinking on");
    tmux.wait("/thinking on", 10, |s| {
        s.contains("reasoning traces: shown")
    });
    tmux.line(&format!("/save {}", saved.display()));
    tmux.wait("/save", 10, |s| s.contains("saved 2 turns"));
    tmux.line("/exit");
    assert_eq!(tmux.exit_status(), "0", "{}", tmux.screen());

    let conv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let users: Vec<&str> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["first line\nsecond line", "abc\ndef"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `torchless chat` in a real terminal, driven through tmux (send-keys / capture-pane) on the
//! real SmolLM2: two turns, a slash command, Ctrl-C during an answer, Ctrl-D to leave.
//! tmux is required: .ci/run installs it, and a missing tmux fails this test loudly.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn real_model(name: &str) -> PathBuf {
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/torchless")
        });
    let p = cache.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh first",
        p.display()
    );
    p
}

/// A tmux server of its own (own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
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

    fn pane(&self, fmt: &str) -> String {
        self.ok(&["display-message", "-p", "-t", "chat", fmt])
            .trim()
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Stats lines printed after answers (not the copy `/stats` repeats).
fn answers(s: &str) -> usize {
    s.lines().filter(|l| l.starts_with("[prompt: ")).count()
}

#[test]
fn terminal_session_two_turns_slash_command_ctrl_c_and_exit() {
    let model = real_model("smollm2-135m-instruct-q4_1");
    let tmux = Tmux {
        socket: format!("torchless-test-{}", std::process::id()),
    };
    let cmd = format!(
        "{} chat {} --temp 0 -n 96 --max-seq-len 2048",
        env!("CARGO_BIN_EXE_torchless"),
        model.display()
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

    // Still in the chat: a third turn reuses the cache of the first two.
    tmux.line("What is 2+2?");
    let s = tmux.wait("the third answer", 120, |s| answers(s) == 3);
    assert!(s.contains("2 + 2 = 4"), "{s}");
    let last = s.rsplit("\n[prompt: ").next().unwrap();
    let reused: usize = last
        .split(" reused")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reused count in {last:?}"));
    assert!(reused > 30, "turn 3 reused only {reused} tokens: {s}");

    // Ctrl-D leaves cleanly.
    tmux.keys(&["C-d"]);
    let start = Instant::now();
    while tmux.pane("#{pane_dead}") != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "chat did not exit on Ctrl-D:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tmux.pane("#{pane_dead_status}"), "0", "{}", tmux.screen());
}

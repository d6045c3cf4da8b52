//! `torchless chat` without a terminal: turns piped on stdin, answers on stdout. The real
//! SmolLM2 checks that the first answer is exactly `torchless run`'s and that the second turn
//! reuses the cache; the tiny fixture covers slash commands, save/load and a full context.

mod common;
use common::real_model;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "torchless {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (new, reused) prompt tokens of every stats line.
fn prompt_counts(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("[prompt: ")?;
            let mut w = rest.split_whitespace();
            let new = w.next()?.parse().ok()?;
            assert_eq!(w.next(), Some("new"));
            assert_eq!(w.next(), Some("+"));
            let reused = w.next()?.parse().ok()?;
            Some((new, reused))
        })
        .collect()
}

const Q1: &str = "What is the capital of France?";
const Q2: &str = "And what is the capital of Germany?";

#[test]
fn piped_turns_match_run_and_reuse_the_cache() {
    let model = real_model("smollm2-135m-instruct-q4_1");
    let m = model.to_str().unwrap();
    let flags = ["--temp", "0", "-n", "24"];
    let mut run_args = vec!["run", m, "-q", "-p", Q1];
    run_args.extend(flags);
    let run = run_with_stdin(&run_args, "");
    let first = String::from_utf8(run.stdout).unwrap();
    assert!(!first.trim().is_empty());
    let mut json_args = run_args.clone();
    json_args.push("--json");
    let json: serde_json::Value =
        serde_json::from_slice(&run_with_stdin(&json_args, "").stdout).unwrap();
    let first_prompt = json["prompt_ids"].as_array().unwrap().len();
    let first_gen = json["generated_ids"].as_array().unwrap().len();

    let mut chat_args = vec!["chat", m];
    chat_args.extend(flags);
    let out = run_with_stdin(&chat_args, &format!("{Q1}\n{Q2}\n"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "{stderr}"
    );
    // run prints no trailing newline; chat ends each answer with one.
    let second = stdout
        .strip_prefix(&format!("{first}\n"))
        .unwrap_or_else(|| {
            panic!("chat's first answer differs from run's: {stdout:?} vs {first:?}")
        });
    assert!(!second.trim().is_empty(), "second answer is empty");
    assert!(second.ends_with('\n'));
    let counts = prompt_counts(&stderr);
    assert_eq!(counts.len(), 2, "{stderr}");
    assert_eq!(counts[0], (first_prompt, 0));
    let (new2, reused2) = counts[1];
    // Turn 2 keeps the first prompt and the whole answer in the cache (the answer's last
    // token was sampled but never fed, so it is processed with the new ones).
    assert_eq!(reused2, first_prompt + first_gen - 1, "{stderr}");
    assert!(new2 < 40, "turn 2 processed {new2} tokens: {stderr}");
    eprintln!("turn 2: {new2} new, {reused2} reused");
}

#[test]
fn slash_commands_save_load_and_exit_on_the_fixture() {
    let dir = std::env::temp_dir().join(format!("torchless-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("conv.json");
    let f = file.to_str().unwrap();
    let input = format!(
        "/frobnicate\nOnce upon\\\n a time\n/thinking on\n/save {f}\n/clear\n/stats\n\
         /load {f}\n/stats\n/system Tell stories.\n/system\n/exit\nnever answered\n"
    );
    let m = data("llama.gguf");
    let out = run_with_stdin(
        &["chat", m.to_str().unwrap(), "--temp", "0", "-n", "5"],
        &input,
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "unknown command /frobnicate; /help lists the commands",
        "reasoning traces: shown",
        "saved 1 turns to",
        "new conversation",
        "conversation: 0 turns",
        "loaded 1 turns from",
        "conversation: 1 turns",
        "system prompt: Tell stories.",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    // One answer only: the line after /exit is never read.
    assert_eq!(prompt_counts(&stderr).len(), 1, "{stderr}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let msgs = saved["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "Once upon\n a time");
    assert_eq!(msgs[1]["role"], "assistant");
    let answer = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        msgs[1]["content"].as_str().unwrap(),
        answer.trim_end_matches('\n')
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_context_is_reported_not_truncated() {
    let m = data("llama.gguf");
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let out = run_with_stdin(
        &[
            "chat",
            m.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "4",
            "--max-seq-len",
            "48",
        ],
        &format!("{long}\nhi\n/stats\n"),
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("the context is full") && stderr.contains("/clear"),
        "{stderr}"
    );
    // The long message was refused whole; the short one was answered.
    assert!(stderr.contains("conversation: 1 turns"), "{stderr}");
}

#[test]
fn chat_flag_spelling_reaches_the_chat_command() {
    let m = data("llama.gguf");
    let out = run_with_stdin(
        &[
            "--chat",
            "--show-thinking",
            m.to_str().unwrap(),
            "-q",
            "--temp",
            "0",
            "-n",
            "3",
        ],
        "Once upon a time\n",
    );
    assert!(!out.stdout.is_empty());
    let help = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["chat", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("--show-thinking") && help.contains("/clear"),
        "{help}"
    );
}

#[test]
fn closed_stdout_ends_the_chat_quietly() {
    use std::io::Read;
    let m = data("llama.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["chat", m.to_str().unwrap(), "--temp", "0", "-n", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // Far more turns than fit in a pipe's buffer of answers; a broken pipe is expected.
        let _ = stdin.write_all("Once upon a time\n/clear\n".repeat(20_000).as_bytes());
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stop: output closed"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn quiet_prints_nothing_but_answers() {
    let m = data("llama.gguf");
    let m = m.to_str().unwrap();
    let out = run_with_stdin(&["chat", m, "-q", "--temp", "0", "-n", "4"], "hi\n");
    assert!(!out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "-q: nothing on stderr"
    );
    // Without -q: the load line, and the fixture has no chat template: a base model.
    let out = run_with_stdin(&["chat", m, "--temp", "0", "-n", "4"], "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("load: ")
            && err.contains("llama.gguf has no chat template, so it is probably a base model"),
        "{err}"
    );
}

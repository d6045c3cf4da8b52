//! Every command README.md shows, run or checked, so an example can never drift from the
//! program again.
//!
//! - Each line of a ```sh block must be listed in [`COVERED`]: run as written through `sh`
//!   (with `torchless` on PATH, a fresh home whose torchless folder holds the default model, and
//!   a mock hub as `HF_ENDPOINT`), or skipped with a reason. A README command missing from the
//!   list, or a listed one the README no longer shows, fails the test.
//! - Each inline `torchless ...` synopsis must name a real subcommand, and every flag it shows
//!   must be one that subcommand's `--help` lists.
//! - The architectures README.md says run are the ones the loader accepts.

mod common;
use common::real_model;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hub::mock::{Behaviour, MockFile, MockHub, MockRepo, TempDir};

/// What to do with a README command.
enum How {
    /// Run it; it must succeed, and print something on stdout when `stdout` is set. With
    /// `quiet`, nothing may reach stderr.
    Run {
        stdout: bool,
        quiet: bool,
    },
    Skip(&'static str),
}

/// Every command of README.md's ```sh blocks (trailing `# comments` removed), in order.
const COVERED: &[(&str, How)] = &[
    (
        r#"cargo run --release -p torchless -- run -p "Why is the sky blue?""#,
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    (
        "scripts/test.sh",
        How::Skip("the whole test suite, this test included"),
    ),
    (
        r#"export PATH="$PWD/target/release:$PATH""#,
        How::Skip("shell setup; every command here runs with the binary on PATH"),
    ),
    (
        "cargo install --path crates/cli --locked",
        How::Skip("installs into ~/.cargo/bin"),
    ),
    (
        r#"torchless chat --system "You are terse." smollm2-135m-instruct-q4_1.gguf"#,
        How::Run {
            stdout: false,
            quiet: false,
        },
    ),
    (
        "torchless serve --port 8080 --parallel 4",
        How::Skip("serves until stopped; tests/serve.rs starts the server and speaks to it"),
    ),
    (
        r#"curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'"#,
        How::Skip("needs the server above; tests/serve.rs sends this request's shape"),
    ),
    (
        r#"torchless run -p "Describe a cat." --temp 0 --json-schema '{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":30}},"required":["name","age"]}'"#,
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    (
        r#"torchless run -p "List two fruits." -n 64 --json-object"#,
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    (
        r#"curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"What is the weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"tool_choice":"required"}'"#,
        How::Skip("needs a running server; tests/serve.rs and openai_client.py make tool calls"),
    ),
    (
        "torchless --chat --show-thinking Qwen/Qwen3-0.6B-GGUF",
        How::Run {
            stdout: false,
            quiet: false,
        },
    ),
    (
        r#"printf 'Hi!\nWhat did I just say?\n' | torchless chat -q"#,
        How::Run {
            stdout: true,
            quiet: true,
        },
    ),
    (
        "pip install maturin && maturin build --release -m python/Cargo.toml -o target/wheels",
        How::Skip("scripts/test-python.sh builds the wheel this way and tests it"),
    ),
    (
        "pip install target/wheels/torchless-*.whl",
        How::Skip("scripts/test-python.sh installs the wheel it built into its venv"),
    ),
    (
        "torchless info --backends",
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    // On CI's lavapipe (Vulkan on the CPU).
    (
        r#"torchless run --backend vulkan -p "Why is the sky blue?" -n 16"#,
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    // 12 of the default model's 30 layers on lavapipe, the rest on the CPU.
    (
        r#"torchless run --backend vulkan -ngl 12 -p "Why is the sky blue?" -n 16"#,
        How::Run {
            stdout: true,
            quiet: false,
        },
    ),
    (
        "torchless bench --backend gpu -p 128 -n 64",
        How::Skip(
            "a speed measurement (lavapipe's says nothing); tests/backend.rs runs bench on the GPU",
        ),
    ),
];

/// Longest a README command may take (SmolLM2 answering twice, unbounded, at the worst).
const TIMEOUT: Duration = Duration::from_secs(300);

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

/// The lines of the ```sh blocks, comments and blank lines dropped.
fn block_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        let line = line.trim();
        if !in_sh || line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A trailing comment follows two or more spaces.
        let cmd = match line.find("  #") {
            Some(i) => line[..i].trim_end(),
            None => line,
        };
        out.push(cmd.to_string());
    }
    out
}

/// Inline code spans that start with `torchless `, outside code blocks.
fn synopses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("torchless ") {
                out.push(span.replace("\\|", "|"));
            }
        }
    }
    out
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_torchless"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`torchless {} --help` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `flag` (`--temp`, `-p`) appears in `help` as a whole option name.
fn lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let before = help[..i].chars().next_back();
        let after = help[i + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
    })
}

#[test]
fn readme_synopses_name_real_commands_and_flags() {
    let text = readme();
    let spans = synopses(&text);
    assert!(spans.len() >= 10, "README synopses not found: {spans:?}");
    let mut problems = Vec::new();
    for span in &spans {
        let words: Vec<&str> = span.split_whitespace().collect();
        // `torchless <command> --help`: every command has help.
        if words[1] == "<command>" {
            help(&[]);
            continue;
        }
        // `torchless --chat ...` is another spelling of `torchless chat ...`.
        let (cmd, rest): (Vec<&str>, &[&str]) = match words[1] {
            "--chat" => (vec!["chat"], &words[2..]),
            "models" => (vec!["models", words[2]], &words[3..]),
            sub => (vec![sub], &words[2..]),
        };
        let text = if words[1] == "--chat" {
            help(&["--chat"])
        } else {
            help(&cmd)
        };
        for w in rest {
            let w = w.trim_matches(|c| c == '[' || c == ']');
            if w.starts_with('-') && w.len() > 1 && !w.starts_with("--help") {
                let flag = w.split('=').next().unwrap();
                if !lists_flag(&text, flag) {
                    problems.push(format!(
                        "`{span}`: `torchless {}` has no {flag}",
                        cmd.join(" ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A mock hub holding what the README's hub examples name (the tiny llama fixture stands in
/// for their weights).
fn mock_hub() -> MockHub {
    let fixture =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")).unwrap();
    MockHub::start(
        vec![MockRepo::new(
            "Qwen/Qwen3-0.6B-GGUF",
            vec![MockFile::lfs("Qwen3-0.6B-Q8_0.gguf", fixture)],
        )],
        Behaviour::default(),
    )
}

/// Runs `line` through `sh` in `home` with a deadline; (success, stdout, stderr).
fn run_line(line: &str, home: &Path, endpoint: &str) -> (bool, String, String) {
    let line = line.replace("cargo run --release -p torchless -- ", "torchless ");
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (out_path, err_path) = (home.join("stdout"), home.join("stderr"));
    let mut child = Command::new("sh")
        .args(["-c", &line])
        .current_dir(home)
        .env("PATH", path)
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("TORCHLESS_CACHE", home.join("torchless"))
        .env("HF_ENDPOINT", endpoint)
        // No PyPI: the default model must come from the torchless folder.
        .env("TORCHLESS_PYTHON", "/nonexistent/python3")
        .env("NO_COLOR", "1")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("README command `{line}` took over {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(out_path).unwrap(),
        std::fs::read_to_string(err_path).unwrap(),
    )
}

#[test]
fn readme_commands_run_as_written() {
    let text = readme();
    let commands = block_commands(&text);
    let listed: Vec<&str> = COVERED.iter().map(|(c, _)| *c).collect();
    let missing: Vec<&String> = commands
        .iter()
        .filter(|c| !listed.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README commands not covered by crates/cli/tests/readme.rs (add them to COVERED): \
         {missing:#?}"
    );
    let stale: Vec<&&str> = listed
        .iter()
        .filter(|c| !commands.iter().any(|r| r == *c))
        .collect();
    assert!(
        stale.is_empty(),
        "COVERED lists commands README.md no longer shows: {stale:#?}"
    );

    let hub = mock_hub();
    let home = TempDir::new("readme");
    let models = home.path().join("torchless/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        real_model("smollm2-135m-instruct-q4_1"),
        models.join("smollm2-135m-instruct-q4_1.gguf"),
    )
    .unwrap();
    for (line, how) in COVERED {
        let (stdout, quiet) = match how {
            How::Run { stdout, quiet } => (stdout, quiet),
            How::Skip(why) => {
                eprintln!("skipped   {line} ({why})");
                continue;
            }
        };
        let t = Instant::now();
        let (ok, out, err) = run_line(line, home.path(), hub.url());
        eprintln!("{:>6.1} s  {line}", t.elapsed().as_secs_f64());
        assert!(ok, "README command `{line}` failed:\n{err}");
        assert!(
            !stdout || !out.trim().is_empty(),
            "`{line}` printed nothing:\n{err}"
        );
        assert!(
            !quiet || err.is_empty(),
            "`{line}` is quiet, yet printed:\n{err}"
        );
    }
    // The hub example really went through the (mock) hub.
    assert!(
        hub.requests().iter().any(|r| r.path.contains("Qwen3-0.6B")),
        "the Qwen example did not reach the hub"
    );
}

/// The architectures the loader accepts, from its refusal of one it does not know (the
/// fixture with its architecture renamed).
fn supported_archs(dir: &Path) -> Vec<String> {
    let mut bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")).unwrap();
    let key = b"general.architecture";
    // The string value follows the key, its type (u32) and its length (u64).
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 12;
    assert_eq!(&bytes[at..at + 5], b"llama");
    bytes[at..at + 5].copy_from_slice(b"zzzzz");
    // The hyperparameter keys too (`llama.block_count` ...), so the file gets as far as the
    // architecture check.
    let prefix = b"llama.";
    while let Some(i) = bytes.windows(prefix.len()).position(|w| w == prefix) {
        bytes[i..i + 5].copy_from_slice(b"zzzzz");
    }
    let file = dir.join("zzzzz.gguf");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(["run", file.to_str().unwrap(), "-p", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let list = err
        .split("(supported: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no list of supported architectures in: {err}"));
    let mut archs: Vec<String> = list.split(", ").map(str::to_string).collect();
    archs.sort();
    archs
}

#[test]
fn readme_architectures_are_the_supported_ones() {
    let text = readme();
    // From "Architectures that run:" to the sentence about the others, the `names`.
    let start = text
        .find("Architectures that run:")
        .expect("README lists the architectures");
    let end = start
        + text[start..]
            .find("Any other")
            .expect("and says what happens to others");
    let mut named: Vec<String> = text[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    named.sort();
    let dir = TempDir::new("readme-archs");
    assert_eq!(
        named,
        supported_archs(dir.path()),
        "README.md's \"Architectures that run\" must name exactly the supported architectures"
    );
}

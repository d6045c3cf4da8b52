//! Hostile files and command lines through the binary (issue 22): each gives a one-line error
//! and a non-zero exit within seconds, or (for `--threads`) a warning and a normal run. The
//! files are the tiny llama fixture rewritten here with the GGUF writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gguf::{GgufFile, GgufWriter, Value};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")
}

/// The fixture with `kv` added or replaced, written to a temp file named after `tag`.
fn rewrite(tag: &str, kv: &[(&str, Value)]) -> PathBuf {
    rewrite_file(&fixture(), tag, kv)
}

fn rewrite_file(src: &Path, tag: &str, kv: &[(&str, Value)]) -> PathBuf {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        if !kv.iter().any(|(key, _)| key == &k) {
            w.add(k, v.clone()).unwrap();
        }
    }
    for (k, v) in kv {
        w.add(*k, v.clone()).unwrap();
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t))
            .unwrap();
    }
    let p = std::env::temp_dir().join(format!(
        "torchless-cli-hostile-{}-{tag}.gguf",
        std::process::id()
    ));
    w.write_file(&p).unwrap();
    p
}

/// Peak memory any run here may reach: the tiny fixture's weights and KV cache are a few
/// MiB, so this is the process's own baseline (code, thread stacks, allocator) plus the chat
/// template's render budget, not anything a file's numbers ask for.
const PEAK_RSS_LIMIT_KIB: i64 = 96 << 10;

/// Runs the binary with `args`; checks its peak resident memory (from `wait4`) stays under
/// [`PEAK_RSS_LIMIT_KIB`], whatever the input.
fn torchless(args: &[&str]) -> (Output, Duration) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        so.read_to_end(&mut b).map(|_| b)
    });
    let mut stderr = Vec::new();
    se.read_to_end(&mut stderr).unwrap();
    let stdout = out.join().unwrap().unwrap();
    let (mut raw, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: `child.id()` is our own unwaited child; `raw` and `usage` are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut raw, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    std::mem::forget(child); // reaped above
    assert!(
        usage.ru_maxrss < PEAK_RSS_LIMIT_KIB,
        "{args:?} peaked at {} MiB",
        usage.ru_maxrss >> 10
    );
    let status = std::process::ExitStatus::from_raw(raw);
    (
        Output {
            status,
            stdout,
            stderr,
        },
        t0.elapsed(),
    )
}

/// Runs `args`, expects failure within 10 s with one `error:` line containing every `want`.
fn fails(args: &[&str], want: &[&str]) {
    let (out, took) = torchless(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    for w in want {
        assert!(lines[0].contains(w), "{args:?}: {err}");
    }
}

#[test]
fn absurd_block_count_is_refused_naming_the_key() {
    for v in [1u64 << 31, (1 << 32) - 1, 1 << 63, u64::MAX] {
        let p = rewrite(
            &format!("layers-{v}"),
            &[("llama.block_count", Value::U64(v))],
        );
        let s = p.to_str().unwrap();
        let want = v.to_string();
        fails(
            &["run", s, "--prompt-ids", "1,2", "-n", "1"],
            &["llama.block_count", &want, "blk.0 to blk.1"],
        );
        // `info` still describes the file, and says why memory cannot be planned.
        let (out, took) = torchless(&["info", s]);
        assert!(took < Duration::from_secs(10));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&p).ok();
    }
}

/// Every integer hyperparameter of every architecture fixture set to 2^31 and to u64::MAX:
/// each run ends within seconds, with a one-line error or an answer, and (checked by
/// `torchless()`) within the memory bound — nothing is sized from a number before it is
/// checked against the tensors.
#[test]
fn huge_hyperparameters_of_every_architecture_stay_bounded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    let mut runs = 0;
    for src in &files {
        let f = GgufFile::open(src).unwrap();
        let arch = f
            .metadata()
            .get_str("general.architecture")
            .unwrap()
            .to_string();
        let keys: Vec<String> = f
            .metadata()
            .iter()
            .filter(|(k, v)| k.starts_with(&format!("{arch}.")) && v.as_integer().is_some())
            .map(|(k, _)| k.to_string())
            .collect();
        let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
        for key in &keys {
            for v in [1u64 << 31, u64::MAX] {
                let p = rewrite_file(src, &format!("{stem}-{key}-{v}"), &[(key, Value::U64(v))]);
                let (out, took) =
                    torchless(&["run", p.to_str().unwrap(), "--prompt-ids", "1,2", "-n", "1"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    took < Duration::from_secs(10),
                    "{stem} {key}={v}: took {took:?}"
                );
                assert!(!err.contains("panicked"), "{stem} {key}={v}: {err}");
                if !out.status.success() {
                    let lines = err.lines().filter(|l| l.starts_with("error")).count();
                    assert_eq!(lines, 1, "{stem} {key}={v}: {err}");
                }
                std::fs::remove_file(&p).ok();
                runs += 1;
            }
        }
    }
    assert!(runs > 200, "only {runs} runs: fixtures missing?");
}

/// Templates that grow without limit: each stopped with a message naming the template and the
/// way around it; `--raw` and `--chat-template-file` then run the same file.
#[test]
fn runaway_chat_templates_are_stopped() {
    let templates = [
        // Doubles a string 64 times: memory, not steps.
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        // A recursive macro doubling its argument.
        "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('ab', 60) }}",
        // A lazy list doubled, then joined.
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join(',') }}",
        // One filter call that multiplies the size: replace() between every character.
        "{{ ('ab' * 1000)|replace('', 'y' * 90000000) }}",
        // Indentation to a huge width.
        "{{ 'a\nb'|indent(1000000000) }}",
        // Loops that never end.
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}",
        // Unbounded recursion.
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // Output without end.
        "{% for i in range(100000) %}{{ 'y' * 10000 }}{% endfor %}",
    ];
    for (i, t) in templates.iter().enumerate() {
        let p = rewrite(
            &format!("template-{i}"),
            &[("tokenizer.chat_template", Value::String(t.to_string()))],
        );
        let s = p.to_str().unwrap();
        fails(
            &["run", s, "-p", "hi", "-n", "1", "--temp", "0"],
            &["template", "stopped"],
        );
        // The ways around it.
        let (out, _) = torchless(&["run", s, "-p", "hi", "-n", "1", "--temp", "0", "--raw"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tf = std::env::temp_dir().join(format!(
            "torchless-cli-hostile-{}-template-{i}.jinja",
            std::process::id()
        ));
        std::fs::write(&tf, "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
        let (out, _) = torchless(&[
            "run",
            s,
            "-p",
            "hi",
            "-n",
            "1",
            "--temp",
            "0",
            "--chat-template-file",
            tf.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&tf).ok();
        std::fs::remove_file(&p).ok();
    }
}

#[test]
fn prompt_ids_with_empty_items_are_rejected() {
    let m = fixture();
    let m = m.to_str().unwrap();
    for ids in ["1,,2", ",1", "1,", " , ", "1, ,2"] {
        fails(
            &["run", m, "--prompt-ids", ids, "-n", "1"],
            &["--prompt-ids", "empty"],
        );
    }
    fails(
        &["run", m, "--prompt-ids", "1,x", "-n", "1"],
        &["--prompt-ids", "\"x\""],
    );
    fails(
        &["run", m, "--prompt-ids", "1,99999999999", "-n", "1"],
        &["--prompt-ids"],
    );
}

#[test]
fn absurd_thread_counts_are_capped_with_a_warning() {
    let m = fixture();
    let (out, took) = torchless(&[
        "run",
        m.to_str().unwrap(),
        "--prompt-ids",
        "1,2",
        "-n",
        "2",
        "--threads",
        "100000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: --threads 100000"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    fails(
        &[
            "run",
            m.to_str().unwrap(),
            "--prompt-ids",
            "1",
            "--threads",
            "0",
        ],
        &["--threads"],
    );
}

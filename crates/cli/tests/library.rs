//! The `torchless` library facade against the real SmolLM2: the same tokens as the CLI,
//! streaming equal to collecting, chat turns that reuse the cache, errors with the engine's
//! messages.

mod common;
use common::real_model;

use std::process::Command;

use torchless::{Error, GenerateOptions, LoadMode, Model, Segment};

const PROMPT: &str = "The three primary colors are";

fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn generate_and_stream_match_the_cli() {
    let path = real_model("smollm2-135m-instruct-q4_1");
    let model = Model::load(&path).unwrap();
    assert_eq!(model.load_decision().mode, LoadMode::Eager);
    let opts = GenerateOptions::greedy(24);
    let out = model.generate(PROMPT, &opts).unwrap();
    let p = path.to_str().unwrap();
    let cli_text = cli(&[
        "run", p, "-p", PROMPT, "--raw", "--temp", "0", "-n", "24", "-q",
    ]);
    assert_eq!(out.text, cli_text);
    assert_eq!(out.tokens.len(), 24);
    assert_eq!(out.finish_reason(), "length");

    let mut pieces = Vec::new();
    let streamed = model
        .stream(PROMPT, &opts, |ev| {
            pieces.push(ev.text.clone());
            true
        })
        .unwrap();
    assert_eq!(pieces.concat(), out.text);
    assert_eq!(streamed.tokens, out.tokens);

    // Stopping from the callback ends at once, without stats.
    let mut n = 0;
    let stopped = model
        .stream(PROMPT, &opts, |_| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert_eq!((stopped.tokens.len(), stopped.stats.is_none()), (3, true));

    // The lazy model gives the same tokens.
    let lazy = Model::load_lazy(&path).unwrap();
    assert_eq!(lazy.load_decision().mode, LoadMode::Lazy);
    assert_eq!(lazy.generate(PROMPT, &opts).unwrap().tokens, out.tokens);

    let ids = model.tokenize("Hello world").unwrap();
    assert_eq!(model.detokenize(&ids), "Hello world");
}

#[test]
fn chat_keeps_the_cache_across_turns() {
    let path = real_model("smollm2-135m-instruct-q4_1");
    let model = Model::load(&path).unwrap();
    let opts = GenerateOptions::greedy(16);
    let user = "Why is the sky blue?";
    let mut chat = model.chat(None).unwrap();
    let mut answer = String::new();
    let first = chat
        .send(user, &opts, |seg| {
            if let Segment::Answer(t) = seg {
                answer.push_str(t);
            }
            true
        })
        .unwrap();
    assert_eq!(first.content, answer);
    assert_eq!(first.reasoning, None);
    // A one-message chat is the CLI's default prompt.
    let p = path.to_str().unwrap();
    assert_eq!(
        first.content,
        cli(&["run", p, "-p", user, "--temp", "0", "-n", "16", "-q"])
    );
    let second = chat.send("Say it shorter.", &opts, |_| true).unwrap();
    assert!(second.reused_tokens > first.completion.prompt_tokens);
    assert_eq!(chat.conversation().messages.len(), 4);

    // The stateless form answers the same history the same way.
    let reply = model
        .reply(&conversation_of(user), &opts, |_| true)
        .unwrap();
    assert_eq!(reply.content, first.content);
}

fn conversation_of(user: &str) -> torchless::Conversation {
    let mut c = torchless::Conversation::new(None);
    c.push_user(user);
    c
}

#[test]
fn errors_carry_the_engine_message() {
    let dir = std::env::temp_dir().join(format!("torchless-lib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"garbage, not a model").unwrap();
    let err = Model::load(&bad).err().unwrap();
    assert!(matches!(err, Error::Engine(_)));
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    let err = torchless::plan_memory(dir.join("missing.gguf"), &Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let path = real_model("smollm2-135m-instruct-q4_1");
    let plan = torchless::plan_memory(&path, &Default::default()).unwrap();
    assert!(plan.lazy.total() < plan.eager.total());
    let opts = torchless::LoadOptions {
        session: torchless::SessionOptions {
            max_seq_len: Some(16),
            kv_dtype: torchless::KvDtype::F16,
        },
        ..Default::default()
    };
    let small = Model::load_with(&path, &opts).unwrap();
    let err = small
        .generate(&"word ".repeat(40), &GenerateOptions::greedy(4))
        .unwrap_err();
    assert!(
        err.to_string().contains("does not fit the context of 16"),
        "{err}"
    );
}

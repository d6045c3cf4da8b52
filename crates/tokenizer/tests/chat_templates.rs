//! Chat templates rendered with minijinja must equal Python jinja2's rendering
//! (as Hugging Face apply_chat_template does it), byte for byte. Expected output
//! comes from tests/gen/gen_chat_golden.py (tests/data/chat_golden.json): the
//! SmolLM2 GGUF's own template and every llama.cpp models/templates/*.jinja.

mod common;

use serde_json::Value;
use tokenizer::chat::{render_chat_json, ChatOptions};

/// (template, scenario, why minijinja's result differs from jinja2's).
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "llama-cpp-deepseek-r1",
        "tools",
        "jinja2's map filter yields a generator that json.dumps rejects; minijinja renders the tool list",
    ),
    (
        "meetkai-functionary-medium-v3.1",
        "tools",
        "jinja2 HTML-escapes a str added to a |safe Markup value (quotes become &#34;); minijinja does not",
    ),
];

fn golden() -> Value {
    let text = std::fs::read_to_string(common::data("chat_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Renders one scenario of the golden file; Err holds the template error text.
fn render(g: &Value, template: &str, scenario: &str) -> Result<String, String> {
    let sc = &g["scenarios"][scenario];
    let messages = serde_json::to_string(&sc["messages"]).unwrap();
    // serde_json::Value keeps keys sorted; the generator wrote the tools from a
    // Python dict in this order, so it is restored from the source text instead.
    let tools = sc.get("tools").map(|_| TOOLS_JSON);
    let opts = ChatOptions {
        add_generation_prompt: sc["add_generation_prompt"].as_bool().unwrap(),
        bos_token: g["bos"].as_str().unwrap(),
        eos_token: g["eos"].as_str().unwrap(),
        tools,
        extra: None,
        now_unix: Some(g["now_unix"].as_i64().unwrap()),
    };
    render_chat_json(template, &messages, &opts).map_err(|e| e.to_string())
}

/// The generator's TOOLS, keys in the generator's order.
const TOOLS_JSON: &str = r#"[{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city, in °C.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}]"#;

fn compare(g: &Value, name: &str, template: &str, failures: &mut Vec<String>) {
    for (scenario, want) in g["templates"][name].as_object().unwrap() {
        if KNOWN_DIFFERENCES
            .iter()
            .any(|(t, s, _)| *t == name && s == scenario)
        {
            continue;
        }
        let got = render(g, template, scenario);
        match (want.get("ok").and_then(Value::as_str), got) {
            (Some(w), Ok(got)) if w == got => {}
            (Some(w), Ok(got)) => failures.push(format!(
                "{name}/{scenario}: output differs\n--- jinja2\n{w}\n--- minijinja\n{got}"
            )),
            (Some(_), Err(e)) => failures.push(format!("{name}/{scenario}: minijinja failed: {e}")),
            (None, Ok(got)) => failures.push(format!(
                "{name}/{scenario}: jinja2 failed ({}) but minijinja rendered:\n{got}",
                want["error"]
            )),
            (None, Err(_)) => {}
        }
    }
}

#[test]
fn tools_text_matches_generator() {
    let g = golden();
    let parsed: Value = serde_json::from_str(TOOLS_JSON).unwrap();
    assert_eq!(parsed, g["scenarios"]["tools"]["tools"]);
}

#[test]
fn smollm2_gguf_template_matches_jinja2() {
    let g = golden();
    let tok = common::load(&common::model("smollm2-135m-instruct-q4_1.gguf"));
    let mut failures = Vec::new();
    compare(
        &g,
        "smollm2-gguf",
        tok.chat_template().unwrap(),
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Through the Tokenizer API as well, with the vocabulary's own BOS/EOS texts.
    let msgs = [tokenizer::ChatMessage::user(
        "Write a haiku about the ocean.",
    )];
    assert_eq!(
        tok.apply_chat_template(&msgs, true, "llama").unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWrite a haiku about the ocean.<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn llama_cpp_templates_match_jinja2() {
    let g = golden();
    let dir = common::cache_dir().join("llama-cpp-vocab/templates");
    assert!(
        dir.exists(),
        "{} missing: run scripts/fetch-tokenizer-tests.sh",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut n = 0;
    for name in g["templates"].as_object().unwrap().keys() {
        if name == "smollm2-gguf" {
            continue;
        }
        let path = dir.join(format!("{name}.jinja"));
        let template =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        compare(&g, name, &template, &mut failures);
        n += 1;
    }
    assert!(n >= 70, "only {n} templates");
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn gemma_fallback_matches_the_golden_chat_prompt() {
    let tok = common::load(&common::model("gemma3-270m-q4_k_m.gguf"));
    assert!(tok.chat_template().is_none());
    let msgs = [tokenizer::ChatMessage::user(
        "Write a haiku about the ocean.",
    )];
    let prompt = tok.apply_chat_template(&msgs, true, "gemma3").unwrap();
    // The prompt llama.cpp's golden greedy run used (BOS comes from add_bos).
    assert_eq!(
        prompt,
        "<start_of_turn>user\nWrite a haiku about the ocean.<end_of_turn>\n<start_of_turn>model\n"
    );
}

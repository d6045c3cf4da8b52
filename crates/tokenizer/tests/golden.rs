//! llama.cpp's tokenization of the two real models (golden/tokenize-*.json):
//! ids with and without special-token parsing, per-token pieces, detokenized text.

mod common;

use serde_json::Value;

fn check_model(golden: &str, model_file: &str) {
    let tok = common::load(&common::model(model_file));
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(common::data(golden)).unwrap()).unwrap();
    let ids_of = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        assert_eq!(
            tok.encode(text, true, true).unwrap(),
            want,
            "{model_file}: ids of {text:?}"
        );
        let want_plain = ids_of(&case["ids_parse_special_false"]);
        assert_eq!(
            tok.encode(text, true, false).unwrap(),
            want_plain,
            "{model_file}: parse_special=false ids of {text:?}"
        );
        for (id, piece) in want.iter().zip(case["pieces"].as_array().unwrap()) {
            let want_bytes: Vec<u8> = match piece {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
                other => panic!("unexpected piece {other}"),
            };
            assert_eq!(
                tok.token_to_piece(*id, true).unwrap(),
                want_bytes,
                "{model_file}: piece of {id}"
            );
        }
        let detok = case["detokenized"].as_str().unwrap();
        assert_eq!(
            tok.decode(&want, true).unwrap(),
            detok,
            "{model_file}: detokenized {text:?}"
        );
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model(
        "tokenize-smollm2-135m-instruct-q4_1.json",
        "smollm2-135m-instruct-q4_1.gguf",
    );
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model(
        "tokenize-gemma3-270m-q4_k_m.json",
        "gemma3-270m-q4_k_m.gguf",
    );
}

#[test]
fn smollm2_special_ids_and_eog() {
    let tok = common::load(&common::model("smollm2-135m-instruct-q4_1.gguf"));
    assert_eq!(tok.pre(), "smollm");
    let im_end = tok.token_id("<|im_end|>").unwrap();
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert!(tok.is_eog(im_end) && tok.is_eog(eot));
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn gemma3_special_ids_and_eog() {
    let tok = common::load(&common::model("gemma3-270m-q4_k_m.gguf"));
    assert_eq!(tok.kind(), tokenizer::TokenizerKind::Spm);
    assert_eq!(tok.bos(), Some(2));
    assert!(tok.add_bos());
    let eot = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.is_eog(eot));
    assert!(tok.is_eog(tok.eos().unwrap()));
}

/// llama.cpp's greedy runs (tests/data/greedy-prompts.json, extracted from the
/// shared greedy-*.json): prompt ids, and the text of the generated ids with
/// and without special tokens, also when streamed one token at a time.
fn check_greedy(model: &str, model_file: &str) {
    let tok = common::load(&common::model(model_file));
    let text = std::fs::read_to_string(common::data("greedy-prompts.json")).unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    let ids_of = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let gens = data["models"][model].as_array().unwrap();
    assert!(gens.len() >= 4);
    for g in gens {
        let name = g["name"].as_str().unwrap();
        let prompt = g["prompt"].as_str().unwrap();
        assert_eq!(
            tok.encode(prompt, true, true).unwrap(),
            ids_of(&g["prompt_ids"]),
            "{model} {name}: prompt ids"
        );
        let generated = ids_of(&g["generated_ids"]);
        assert_eq!(
            tok.decode(&generated, true).unwrap(),
            g["text"].as_str().unwrap(),
            "{model} {name}: text"
        );
        assert_eq!(
            tok.decode(&generated, false).unwrap(),
            g["text_no_special"].as_str().unwrap(),
            "{model} {name}: text without special tokens"
        );
        let mut stream = tokenizer::StreamDecoder::new(true);
        let streamed: String = generated
            .iter()
            .map(|&id| stream.push(&tok, id).unwrap())
            .collect();
        assert_eq!(
            streamed + &stream.finish(),
            g["text"].as_str().unwrap(),
            "{model} {name}: streamed"
        );
    }
}

#[test]
fn smollm2_greedy_prompts_and_texts() {
    check_greedy(
        "smollm2-135m-instruct-q4_1",
        "smollm2-135m-instruct-q4_1.gguf",
    );
}

#[test]
fn gemma3_greedy_prompts_and_texts() {
    check_greedy("gemma3-270m-q4_k_m", "gemma3-270m-q4_k_m.gguf");
}

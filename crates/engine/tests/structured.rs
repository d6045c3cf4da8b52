//! Structured output on the real SmolLM2: seeded samples at temperature 1 under 20+ JSON
//! Schemas all parse and validate (checked by the independent `jsonschema` validator, formats
//! included), Lark samples match their grammar, greedy output the schema already allows is
//! unchanged, and bad schemas/grammars are errors that name the problem.
//!
//! Needs scripts/fetch-models.sh (the model lives in $TORCHLESS_CACHE/models).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use engine::{
    Constraint, ConstraintSpec, EngineError, Event, GenerateOptions, LoadedModel, Request,
    SamplingParams, Scheduler, SchedulerOptions, Session, SessionOptions, StopReason,
};
use serde_json::{json, Value};

fn model() -> &'static Arc<LoadedModel> {
    static LM: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    LM.get_or_init(|| {
        let cache = std::env::var_os("TORCHLESS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                    .join(".cache/torchless")
            });
        let p = cache.join("models/smollm2-135m-instruct-q4_1.gguf");
        assert!(
            p.is_file(),
            "{} is missing: run scripts/fetch-models.sh",
            p.display()
        );
        Arc::new(LoadedModel::load(p).unwrap())
    })
}

fn prompt(lm: &LoadedModel, ask: &str) -> Vec<u32> {
    let text = lm
        .chat_prompt(ask)
        .unwrap()
        .expect("SmolLM2 has a chat template");
    lm.tokenize(&text, true, true).unwrap()
}

/// Generates under `spec`; returns the text and why it stopped.
fn session(lm: &LoadedModel) -> Session {
    lm.new_session(&SessionOptions {
        max_seq_len: Some(512),
        ..Default::default()
    })
    .unwrap()
}

/// Generates under `spec` in `s`, keeping what `s` already holds of the prompt (the seeds of
/// one schema share it); returns the ids, the text and why it stopped.
fn generate_in(
    s: &mut Session,
    ids: &[u32],
    constraint: Option<Constraint>,
    sampling: SamplingParams,
    max_tokens: usize,
) -> (Vec<u32>, String, StopReason) {
    let opts = GenerateOptions {
        max_tokens: Some(max_tokens),
        sampling,
        constraint,
        ..Default::default()
    };
    let kept = s.reuse_prefix(ids);
    let mut out = Vec::new();
    let mut text = String::new();
    let st = s
        .generate_with(&ids[kept..], &opts, |e| {
            out.push(e.id);
            text.push_str(&e.text);
        })
        .unwrap();
    (out, text, st.stop)
}

fn generate(
    lm: &LoadedModel,
    ask: &str,
    spec: Option<&ConstraintSpec>,
    sampling: SamplingParams,
    max_tokens: usize,
) -> (Vec<u32>, String, StopReason) {
    let constraint = spec.map(|s| lm.compile_constraint(s).unwrap());
    generate_in(
        &mut session(lm),
        &prompt(lm, ask),
        constraint,
        sampling,
        max_tokens,
    )
}

/// Schemas covering the keywords the issue lists. Strings carry `maxLength` (or a pattern,
/// enum or format) so a temperature-1 sample finishes within the token budget.
fn schemas() -> Vec<(&'static str, Value)> {
    // Numbers are bounded too: an unbounded JSON number may take every remaining token as
    // digits at temperature 1.
    let name = json!({"type": "string", "maxLength": 12});
    let num = json!({"type": "number", "minimum": -100, "maximum": 100, "multipleOf": 0.1});
    let small = json!({"type": "integer", "minimum": -20, "maximum": 20});
    vec![
        (
            "flat object",
            json!({"type": "object", "properties": {"name": name, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": false}),
        ),
        (
            "nested object",
            json!({"type": "object", "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 9999}, "tag": name}, "required": ["id", "tag"], "additionalProperties": false}}, "required": ["user"], "additionalProperties": false}),
        ),
        (
            "three levels",
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"type": "boolean"}}, "required": ["c"], "additionalProperties": false}}, "required": ["b"], "additionalProperties": false}}, "required": ["a"], "additionalProperties": false}),
        ),
        (
            "array min/max items",
            json!({"type": "array", "items": {"type": "integer", "minimum": -99, "maximum": 99}, "minItems": 2, "maxItems": 4}),
        ),
        (
            "array of objects",
            json!({"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "object", "properties": {"x": num, "y": num}, "required": ["x", "y"], "additionalProperties": false}}),
        ),
        (
            "string enum",
            json!({"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"], "additionalProperties": false}),
        ),
        ("mixed enum", json!({"enum": ["yes", 1, true, null]})),
        (
            "const",
            json!({"type": "object", "properties": {"kind": {"const": "point"}, "v": {"type": "integer", "minimum": 0, "maximum": 100}}, "required": ["kind", "v"], "additionalProperties": false}),
        ),
        (
            "integer range",
            json!({"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}}, "required": ["score"], "additionalProperties": false}),
        ),
        (
            "number exclusive range",
            json!({"type": "object", "properties": {"p": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.01}}, "required": ["p"], "additionalProperties": false}),
        ),
        (
            "negative range",
            json!({"type": "integer", "minimum": -50, "maximum": -5}),
        ),
        (
            "string pattern",
            json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}}, "required": ["code"], "additionalProperties": false}),
        ),
        (
            "string length",
            json!({"type": "string", "minLength": 3, "maxLength": 8}),
        ),
        (
            "format date",
            json!({"type": "object", "properties": {"when": {"type": "string", "format": "date"}}, "required": ["when"], "additionalProperties": false}),
        ),
        (
            "format date-time",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "format email",
            json!({"type": "object", "properties": {"email": {"type": "string", "format": "email", "maxLength": 30}}, "required": ["email"], "additionalProperties": false}),
        ),
        ("format uuid", json!({"type": "string", "format": "uuid"})),
        (
            "anyOf",
            json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "maxLength": 6}]}),
        ),
        (
            "anyOf objects",
            json!({"type": "object", "properties": {"shape": {"anyOf": [{"type": "object", "properties": {"r": num}, "required": ["r"], "additionalProperties": false}, {"type": "object", "properties": {"w": {"type": "integer", "minimum": 1, "maximum": 50}, "h": {"type": "integer", "minimum": 1, "maximum": 50}}, "required": ["w", "h"], "additionalProperties": false}]}}, "required": ["shape"], "additionalProperties": false}),
        ),
        (
            "$ref to $defs",
            json!({"$defs": {"pt": {"type": "object", "properties": {"x": small, "y": small}, "required": ["x", "y"], "additionalProperties": false}}, "type": "object", "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}}, "required": ["from", "to"], "additionalProperties": false}),
        ),
        (
            "$ref chain",
            json!({"$defs": {"name": name, "person": {"type": "object", "properties": {"first": {"$ref": "#/$defs/name"}, "last": {"$ref": "#/$defs/name"}}, "required": ["first", "last"], "additionalProperties": false}}, "type": "object", "properties": {"author": {"$ref": "#/$defs/person"}}, "required": ["author"], "additionalProperties": false}),
        ),
        (
            "optional properties",
            json!({"type": "object", "properties": {"a": small, "b": {"type": "boolean"}, "c": {"type": "null"}}, "additionalProperties": false}),
        ),
        (
            "type list",
            json!({"type": "object", "properties": {"v": {"type": ["integer", "null"], "minimum": 0, "maximum": 999}}, "required": ["v"], "additionalProperties": false}),
        ),
        (
            "array of enums unique",
            json!({"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}),
        ),
    ]
}

#[test]
fn seeded_samples_validate_against_24_schemas() {
    let lm = model();
    let schemas = schemas();
    assert!(schemas.len() >= 20);
    let mut failures = Vec::new();
    for (name, schema) in &schemas {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let constraint = lm
            .compile_constraint(&ConstraintSpec::JsonSchema(schema.clone()))
            .unwrap();
        let ids = prompt(
            lm,
            &format!("Reply with JSON matching this schema: {schema}"),
        );
        let mut s = session(lm);
        for seed in 0..5 {
            let sampling = SamplingParams {
                temperature: 1.0,
                seed,
                ..Default::default()
            };
            let (_, text, stop) = generate_in(&mut s, &ids, Some(constraint.clone()), sampling, 80);
            let verdict = match serde_json::from_str::<Value>(&text) {
                _ if stop != StopReason::Eos => Err(format!("stopped by {stop}")),
                Ok(v) => match validator.validate(&v) {
                    Ok(()) => Ok(()),
                    Err(e) => Err(format!("invalid: {e}")),
                },
                Err(e) => Err(format!("not JSON: {e}")),
            };
            if let Err(why) = verdict {
                failures.push(format!("{name} seed {seed}: {why}: {text:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lark_samples_match_the_grammar() {
    let lm = model();
    let grammar = r#"
start: "The answer is " ANSWER "."
ANSWER: "yes" | "no" | /[0-9]{1,3}/
"#;
    let spec = ConstraintSpec::Lark(grammar.into());
    let shape = |t: &str| {
        let Some(rest) = t.strip_prefix("The answer is ") else {
            return false;
        };
        let Some(a) = rest.strip_suffix('.') else {
            return false;
        };
        a == "yes"
            || a == "no"
            || (1..=3).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit())
    };
    for seed in 0..5 {
        let sampling = SamplingParams {
            temperature: 1.0,
            seed,
            ..Default::default()
        };
        let (_, text, stop) = generate(lm, "Is the sky blue?", Some(&spec), sampling, 24);
        assert_eq!(stop, StopReason::Eos, "seed {seed}: {text:?}");
        assert!(shape(&text), "seed {seed}: {text:?}");
    }
}

/// A grammar can name a control token by id (`<[ID]>`), as the server's grammar for
/// Mistral's `[TOOL_CALLS]` calls does: here SmolLM2's `<|im_start|>` (id 1) must come first,
/// and its text is not part of the answer.
#[test]
fn grammars_can_require_a_control_token_by_id() {
    let lm = model();
    let spec =
        ConstraintSpec::Lark("start: <[1]> \" [\" %json {\"type\": \"integer\"} \"]\"\n".into());
    let (ids, text, stop) = generate(
        lm,
        "Pick a number.",
        Some(&spec),
        SamplingParams::greedy(),
        12,
    );
    assert_eq!(ids.first(), Some(&1), "{ids:?}");
    assert_eq!(stop, StopReason::Eos, "{text:?}");
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'));
    assert!(
        inner.is_some_and(|n| n.trim().parse::<i64>().is_ok()),
        "{text:?}"
    );
}

#[test]
fn greedy_output_the_schema_allows_is_unchanged() {
    let lm = model();
    let ask =
        "Give a JSON object with the key \"name\" set to \"Alice\" and the key \"age\" set to 30.";
    let (free_ids, free_text, free_stop) = generate(lm, ask, None, SamplingParams::greedy(), 40);
    assert_eq!(free_stop, StopReason::Eos);
    let answer: Value = serde_json::from_str(&free_text)
        .unwrap_or_else(|e| panic!("the free answer is not JSON ({e}): {free_text:?}"));
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]});
    assert!(jsonschema::is_valid(&schema, &answer), "{free_text}");
    let specs = [
        ConstraintSpec::JsonSchema(schema.clone()),
        ConstraintSpec::JsonObject,
        ConstraintSpec::Lark(format!("start: %json {schema}")),
    ];
    for spec in specs {
        let (ids, text, stop) = generate(lm, ask, Some(&spec), SamplingParams::greedy(), 40);
        assert_eq!(
            (&ids, &text, stop),
            (&free_ids, &free_text, free_stop),
            "{spec:?}"
        );
    }
}

#[test]
fn constraint_changes_what_greedy_would_say() {
    // The free answer to this is prose; the constraint turns it into the one allowed value.
    let lm = model();
    let spec = ConstraintSpec::JsonSchema(json!({"enum": ["alpha", "beta"]}));
    let (_, free, _) = generate(lm, "Say hello.", None, SamplingParams::greedy(), 12);
    let (_, text, stop) = generate(lm, "Say hello.", Some(&spec), SamplingParams::greedy(), 12);
    assert!(!free.starts_with('"'), "{free:?}");
    assert!(text == "\"alpha\"" || text == "\"beta\"", "{text:?}");
    assert_eq!(stop, StopReason::Eos);
}

fn compile_err(spec: ConstraintSpec) -> String {
    match model().compile_constraint(&spec) {
        Err(EngineError::Constraint(msg)) => msg,
        Err(e) => panic!("wrong error kind for {spec:?}: {e}"),
        Ok(_) => panic!("{spec:?} compiled"),
    }
}

#[test]
fn invalid_schemas_and_grammars_are_errors_naming_the_problem() {
    let cases = [
        (
            ConstraintSpec::JsonSchema(json!({"type": "strnig"})),
            "strnig",
        ),
        (
            ConstraintSpec::JsonSchema(
                json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}),
            ),
            "missing",
        ),
        (
            ConstraintSpec::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
            "minimum",
        ),
        (ConstraintSpec::JsonSchema(json!([1, 2])), "an array"),
        (ConstraintSpec::Lark("start: foo".into()), "foo"),
        (ConstraintSpec::Lark("start: \"a\" (".into()), "start"),
        (ConstraintSpec::Lark("   ".into()), "empty"),
    ];
    for (spec, needle) in cases {
        let msg = compile_err(spec.clone());
        assert!(
            msg.to_lowercase().contains(needle),
            "{spec:?}: {msg:?} does not mention {needle:?}"
        );
    }
    match ConstraintSpec::json_schema_arg("{\"type\": ") {
        Err(EngineError::Constraint(m)) => assert!(m.contains("not valid JSON"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batched_constrained_requests_get_their_solo_answers() {
    // Three constraints decoded together by the scheduler, each sampled at temperature 1:
    // every request gets exactly the tokens it gets alone in a Session.
    let lm = model();
    let specs = [
        ConstraintSpec::JsonSchema(
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"], "additionalProperties": false}),
        ),
        ConstraintSpec::JsonObject,
        ConstraintSpec::Lark("start: \"Answer: \" (\"yes\" | \"no\")".into()),
    ];
    let jobs: Vec<(Vec<u32>, GenerateOptions)> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let opts = GenerateOptions {
                max_tokens: Some(24),
                sampling: SamplingParams {
                    temperature: 1.0,
                    seed: 11 + i as u64,
                    ..Default::default()
                },
                constraint: Some(lm.compile_constraint(spec).unwrap()),
                ..Default::default()
            };
            (prompt(lm, "Reply in JSON: pick a number."), opts)
        })
        .collect();
    let sched = Scheduler::start(
        lm.clone(),
        SchedulerOptions {
            n_parallel: 3,
            max_seq_len: Some(512),
            ..Default::default()
        },
    )
    .unwrap();
    let handles: Vec<_> = jobs
        .iter()
        .map(|(p, o)| {
            sched
                .submit(Request {
                    prompt: p.clone(),
                    options: o.clone(),
                })
                .unwrap()
        })
        .collect();
    for ((p, o), h) in jobs.iter().zip(handles) {
        let (mut ids, mut stop) = (Vec::new(), None);
        for ev in h {
            match ev {
                Event::Token(t) => ids.push(t.id),
                Event::Done(f) => stop = Some(f.stop),
                Event::Error(e) => panic!("{e}"),
            }
        }
        let mut s = lm
            .new_session(&SessionOptions {
                max_seq_len: Some(512),
                ..Default::default()
            })
            .unwrap();
        let mut solo = Vec::new();
        let st = s.generate_with(p, o, |e| solo.push(e.id)).unwrap();
        assert_eq!((ids, stop), (solo, Some(st.stop)), "{:?}", o.constraint);
    }
}

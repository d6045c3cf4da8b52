//! Structured output for the chat endpoint: `response_format` becomes a constraint, and
//! `tools` + `tool_choice` become a tool list for the chat template, a constraint when a call
//! is required, and a parser that turns the model's `<tool_call>{json}</tool_call>` blocks
//! (the Hermes/Qwen syntax) into OpenAI `tool_calls`.
//!
//! Templates that render `tools` themselves get them as a template variable; for the others
//! (SmolLM2's plain ChatML, for one) the tools are described in the system message in the
//! same Hermes syntax, and past calls and results are written into the messages as text.

use engine::{bounded_whitespace, ConstraintSpec};
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::tool_calls::Syntax;

/// `response_format` → what the output must match (`None`: free text).
pub fn response_format(rf: Option<&Value>) -> Result<Option<ConstraintSpec>, ApiError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |m: &str| ApiError::invalid(format!("response_format: {m}"), Some("response_format"));
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ConstraintSpec::JsonObject)),
        Some("json_schema") => {
            let js = rf
                .get("json_schema")
                .ok_or_else(|| bad("type json_schema needs a `json_schema` object"))?;
            match js.get("schema") {
                Some(s) if s.is_object() || s.is_boolean() => {
                    Ok(Some(ConstraintSpec::JsonSchema(s.clone())))
                }
                Some(_) => Err(bad("json_schema.schema must be a JSON Schema object")),
                // OpenAI allows a schema-less entry: any JSON object then.
                None => Ok(Some(ConstraintSpec::JsonObject)),
            }
        }
        Some(other) => Err(bad(&format!(
            "type {other:?} is not one of text, json_object, json_schema"
        ))),
        None => Err(bad("missing `type`")),
    }
}

/// What a request's `tools` and `tool_choice` ask of this generation.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    /// `[{type, function: {name, description, parameters}}]` as sent.
    pub tools: Vec<Value>,
    /// Output constraint when a call is required (`required` or a named function).
    pub constraint: Option<ConstraintSpec>,
}

fn names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect()
}

/// Checks `tools`/`tool_choice`; `None` when there are no tools or the choice is `none`.
pub fn plan(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
    syntax: Syntax,
    mistral_marker: Option<u32>,
) -> Result<Option<ToolPlan>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::invalid("tools must be a list", Some("tools"))),
    };
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                format!("{at}.type must be \"function\""),
                Some("tools"),
            ));
        }
        let f = &t["function"];
        if f["name"].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                format!("{at}.function.name must be a non-empty string"),
                Some("tools"),
            ));
        }
        if !(f["parameters"].is_null() || f["parameters"].is_object()) {
            return Err(ApiError::invalid(
                format!("{at}.function.parameters must be a JSON Schema object"),
                Some("tools"),
            ));
        }
    }
    let bad_choice = || {
        ApiError::invalid(
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \
             \"function\": {\"name\": ...}} naming one of the tools",
            Some("tool_choice"),
        )
    };
    let required: Option<Vec<Value>> = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => return Ok(None),
            "auto" => None,
            "required" => Some(tools.clone()),
            _ => return Err(bad_choice()),
        },
        Some(v) => {
            let name = v["function"]["name"].as_str().ok_or_else(bad_choice)?;
            if !names(&tools).contains(&name) {
                return Err(bad_choice());
            }
            Some(
                tools
                    .iter()
                    .filter(|t| t["function"]["name"] == name)
                    .cloned()
                    .collect(),
            )
        }
    };
    let constraint = required
        .map(|allowed| call_grammar(&allowed, parallel.unwrap_or(true), syntax, mistral_marker));
    Ok(Some(ToolPlan { tools, constraint }))
}

/// A Lark grammar of well-formed calls to `allowed` tools in `syntax`: the name is one of
/// theirs and the arguments match that tool's parameter schema. Hermes and Mistral allow one
/// or more calls (one without `parallel`); Llama 3 answers with exactly one. Mistral's calls
/// open with its `[TOOL_CALLS]` control token, named in the grammar by its id.
fn call_grammar(
    allowed: &[Value],
    parallel: bool,
    syntax: Syntax,
    mistral_marker: Option<u32>,
) -> ConstraintSpec {
    let args_key = match syntax {
        Syntax::Hermes | Syntax::Mistral => "arguments",
        Syntax::Llama3Json => "parameters",
    };
    let one_of: Vec<Value> = allowed
        .iter()
        .map(|t| {
            let f = &t["function"];
            let params = if f["parameters"].is_object() {
                f["parameters"].clone()
            } else {
                json!({"type": "object"})
            };
            json!({
                "type": "object",
                "properties": {"name": {"const": f["name"]}, args_key: params},
                "required": ["name", args_key],
                "additionalProperties": false,
            })
        })
        .collect();
    let schema = bounded_whitespace(json!({"anyOf": one_of}));
    if syntax == Syntax::Llama3Json {
        return ConstraintSpec::Lark(format!("start: %json {schema}\n"));
    }
    if let (Syntax::Mistral, Some(id)) = (syntax, mistral_marker) {
        let more = if parallel { " (\", \" call)*" } else { "" };
        return ConstraintSpec::Lark(format!(
            "start: <[{id}]> \" [\" call{more} \"]\"\ncall: %json {schema}\n"
        ));
    }
    let repeat = if parallel { " (\"\\n\" call)*" } else { "" };
    ConstraintSpec::Lark(format!(
        "start: call{repeat}\ncall: \"<tool_call>\\n\" %json {schema} \"\\n</tool_call>\"\n"
    ))
}

/// The system-message text describing `tools` to a template that cannot render them.
fn tools_prompt(tools: &[Value]) -> String {
    let mut s = String::from(
        "You may call one or more functions to help with the user's request. The functions, \
         as JSON signatures within <tools></tools>:\n<tools>\n",
    );
    for t in tools {
        s.push_str(&t.to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call a function, reply with a JSON object with its name and arguments \
         within <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \
         \"arguments\": <args-json-object>}\n</tool_call>",
    );
    s
}

fn call_text(call: &Value) -> String {
    let f = &call["function"];
    format!(
        "<tool_call>\n{}\n</tool_call>",
        json!({"name": f["name"], "arguments": arguments_value(&f["arguments"])})
    )
}

/// OpenAI sends arguments as a JSON string; templates want the object.
fn arguments_value(a: &Value) -> Value {
    match a {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| a.clone()),
        other => other.clone(),
    }
}

/// Prepares template messages and variables for `plan` (and for past tool messages, which
/// may appear even without tools in this request). `native`: the template renders tools.
pub fn prepare_messages(msgs: &mut Vec<Value>, plan: Option<&ToolPlan>, native: bool) {
    for m in msgs.iter_mut() {
        let Some(calls) = m.get("tool_calls").and_then(Value::as_array).cloned() else {
            continue;
        };
        if native {
            // Templates iterate `tool_call.function.arguments` as a mapping.
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c["function"]["arguments"] = arguments_value(&c["function"]["arguments"]);
                    c
                })
                .collect();
            m["tool_calls"] = Value::from(calls);
        } else {
            let mut text = m["content"].as_str().unwrap_or("").to_string();
            for c in &calls {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&call_text(c));
            }
            m["content"] = Value::from(text);
            m.as_object_mut().map(|o| o.remove("tool_calls"));
        }
    }
    if native {
        return;
    }
    for m in msgs.iter_mut() {
        if m["role"] == "tool" {
            let body = m["content"].as_str().unwrap_or("").to_string();
            m["role"] = Value::from("user");
            m["content"] = Value::from(format!("<tool_response>\n{body}\n</tool_response>"));
        }
    }
    if let Some(plan) = plan {
        let note = tools_prompt(&plan.tools);
        match msgs.first_mut() {
            Some(m) if m["role"] == "system" => {
                let s = format!("{}\n\n{note}", m["content"].as_str().unwrap_or(""));
                m["content"] = Value::from(s);
            }
            _ => msgs.insert(0, json!({"role": "system", "content": note})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_choice_and_response_format_checked() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        assert!(plan(
            Some(&tools),
            Some(&json!("none")),
            None,
            Syntax::Hermes,
            None
        )
        .unwrap()
        .is_none());
        assert!(plan(
            Some(&tools),
            Some(&json!("auto")),
            None,
            Syntax::Hermes,
            None
        )
        .unwrap()
        .unwrap()
        .constraint
        .is_none());
        assert!(plan(
            Some(&tools),
            Some(&json!("required")),
            None,
            Syntax::Llama3Json,
            None
        )
        .unwrap()
        .unwrap()
        .constraint
        .is_some());
        let named = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(
            plan(Some(&tools), Some(&named), None, Syntax::Hermes, None)
                .unwrap_err()
                .param
                .as_deref(),
            Some("tool_choice")
        );
        assert!(plan(
            Some(&json!([{"type": "x"}])),
            None,
            None,
            Syntax::Hermes,
            None
        )
        .is_err());
        assert!(response_format(Some(&json!({"type": "xml"}))).is_err());
        assert_eq!(
            response_format(Some(&json!({"type": "json_object"}))).unwrap(),
            Some(ConstraintSpec::JsonObject)
        );
    }

    #[test]
    fn mistral_required_calls_open_with_the_marker_token() {
        let tools = json!([{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]);
        let p = plan(
            Some(&tools),
            Some(&json!("required")),
            Some(false),
            Syntax::Mistral,
            Some(9),
        )
        .unwrap()
        .unwrap();
        let Some(ConstraintSpec::Lark(g)) = p.constraint else {
            panic!("a grammar");
        };
        assert!(g.starts_with("start: <[9]> \" [\" call \"]\""), "{g}");
    }
}

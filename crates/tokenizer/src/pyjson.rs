//! `tojson` as Hugging Face chat templates see it: Python's
//! `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)`.
//!
//! minijinja's own `tojson` escapes HTML characters and writes compact JSON;
//! templates rendered by transformers get `", "` / `": "` separators and raw
//! non-ASCII text, and the prompt must match that byte for byte.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Widest `indent` accepted (a huge one multiplies the output by its width per line).
const MAX_INDENT: usize = 64;

pub(crate) fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) if n > MAX_INDENT as i64 => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent {n} is too large (at most {MAX_INDENT})"),
                ))
            }
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => {
                let s = v.as_str().unwrap_or("");
                if s.len() > MAX_INDENT {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent string is too large",
                    ));
                }
                Some(s.to_string())
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(seps) if !seps.is_none() => {
            let a: Vec<Value> = seps.try_iter()?.collect();
            if a.len() != 2 {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "separators must be a pair",
                ));
            }
            (a[0].to_string(), a[1].to_string())
        }
        // Python drops the trailing space of the item separator when indenting.
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let opts = Opts {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    write_value(&value, &opts, 0, &mut out)?;
    Ok(out)
}

struct Opts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn newline(opts: &Opts, depth: usize, out: &mut String) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_value(v: &Value, opts: &Opts, depth: usize, out: &mut String) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_str(v.as_str().unwrap_or(""), opts.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(opts, depth + 1, out);
                write_value(item, opts, depth + 1, out)?;
            }
            newline(opts, depth, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(opts, depth + 1, out);
                write_str(&k.to_string(), opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                write_value(&v.get_item(k)?, opts, depth + 1, out)?;
            }
            newline(opts, depth, out);
            out.push('}');
        }
        _ => write_str(&v.to_string(), opts.ensure_ascii, out),
    }
    Ok(())
}

/// Python's `repr(float)` for the values JSON can carry.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let s = format!("{f:?}");
    // Rust prints 1e16 as "1e16", Python as "1e+16".
    match s.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => s,
    }
}

fn write_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Output formatter printing values the way Python's `str()` does in jinja2:
/// `True`/`False`/`None`, and lists/dicts as Python reprs (`{'a': 1}`), which
/// some templates print directly.
pub(crate) fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            python_repr(value, &mut s)?;
            out.write_str(&s).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn python_repr(v: &Value, out: &mut String) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&python_float(f64::try_from(v.clone()).unwrap_or(f64::NAN))),
        },
        ValueKind::String => python_str_repr(v.as_str().unwrap_or(""), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&k, out)?;
                out.push_str(": ");
                python_repr(&v.get_item(&k)?, out)?;
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
    Ok(())
}

fn python_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// jinja2's `length`: an undefined value has length 0 instead of being an error.
pub(crate) fn length(v: Value) -> Result<usize, Error> {
    if v.is_undefined() || v.is_none() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot calculate length of value of type {}", v.kind()),
        )
    })
}

/// jinja2's `string`: Python's `str()`, so containers print as Python reprs.
pub(crate) fn string(v: Value) -> Result<String, Error> {
    match v.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            python_repr(&v, &mut s)?;
            Ok(s)
        }
        ValueKind::Undefined => Ok(String::new()),
        _ => Ok(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(src: &str, ctx: &str) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", super::tojson);
        let ctx: minijinja::Value = serde_json::from_str(ctx).unwrap();
        env.render_str(src, ctx).unwrap()
    }

    #[test]
    fn matches_python_json_dumps() {
        let ctx = r#"{"x": {"b": [1, 2.5, null, true], "a": "°C <&>\n"}}"#;
        assert_eq!(
            render("{{ x | tojson }}", ctx),
            r#"{"b": [1, 2.5, null, true], "a": "°C <&>\n"}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2) }}", ctx),
            "{\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": \"°C <&>\\n\"\n}"
        );
        assert_eq!(
            render("{{ x.b | tojson(separators=(',', ':')) }}", ctx),
            "[1,2.5,null,true]"
        );
    }

    #[test]
    fn python_str_of_containers() {
        let mut env = Environment::new();
        env.add_filter("string", super::string);
        env.set_formatter(super::python_formatter);
        let ctx: minijinja::Value =
            serde_json::from_str(r#"{"d": {"k": "it's", "n": [1, true, null]}, "b": false}"#)
                .unwrap();
        let out = env
            .render_str("{{ d | string }} {{ d }} {{ b }}", ctx)
            .unwrap();
        assert_eq!(
            out,
            r#"{'k': "it's", 'n': [1, True, None]} {'k': "it's", 'n': [1, True, None]} False"#
        );
    }
}

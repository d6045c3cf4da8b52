//! `torchless info`: a summary of a GGUF model file, for people (aligned text) or scripts
//! (`--json`, one object with stable snake_case keys).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use engine::inspect::{GgmlType, GgufFile, GgufResult, Metadata, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf path (for split models the first part), owner/name[:QUANT] or
    /// owner/name/FILE.gguf on the Hugging Face hub (downloaded into its cache)
    /// [default: SmolLM2-135M-Instruct Q4_1, fetched on first use]
    pub model: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Also list every tensor: name, type, shape, file offset, size
    #[arg(long)]
    pub tensors: bool,
    /// Show only the memory plan: eager and lazy totals (weights, KV cache, scratch) at the
    /// default and the trained context, and what --load auto would choose here
    #[arg(long, conflicts_with = "tensors")]
    pub memory: bool,
    /// With --memory: plan for this context instead of the default one
    #[arg(long, value_name = "N", requires = "memory")]
    pub max_seq_len: Option<usize>,
    /// With --memory: KV cache element type
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub kv_dtype: String,
    /// List the GPU adapters `--backend` can use (API, type, limits, features) and what
    /// `--backend auto` would pick; no model needed
    #[arg(long, conflicts_with_all = ["tensors", "memory"])]
    pub backends: bool,
}

/// Special tokens shown when the model defines them: (role, metadata key). The key names are
/// llama.cpp's, including its spelling of "seperator".
const SPECIAL_TOKENS: &[(&str, &str)] = &[
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("eot", "tokenizer.ggml.eot_token_id"),
    ("eom", "tokenizer.ggml.eom_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

/// Arrays longer than this are abbreviated in text output (JSON always has them whole).
const MAX_ARRAY_SHOWN: usize = 8;

struct SpecialToken {
    role: &'static str,
    id: u32,
    text: Option<String>,
}

struct TypeCount {
    ty: GgmlType,
    tensors: usize,
    bytes: u64,
}

/// Everything `info` reports, gathered once and rendered as text or JSON.
struct Report<'a> {
    file: &'a GgufFile,
    arch: Option<&'a str>,
    name: Option<&'a str>,
    n_params: u64,
    file_type: Option<u32>,
    context_length: Option<u64>,
    hparams: Vec<(&'a str, &'a Value)>,
    tokenizer_model: Option<&'a str>,
    tokenizer_pre: Option<&'a str>,
    vocab_size: Option<usize>,
    n_merges: Option<usize>,
    chat_template: bool,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    special: Vec<SpecialToken>,
    types: Vec<TypeCount>,
}

pub fn run(args: Args) -> Result<()> {
    if args.backends {
        return backends(args.json);
    }
    let path = super::model_path(args.model.as_deref())?;
    let file = GgufFile::open(&path).context("cannot read model")?;
    if args.memory {
        let kv = super::args::parse_kv_dtype(&args.kv_dtype)?;
        if args.max_seq_len == Some(0) {
            anyhow::bail!("--max-seq-len: must be at least 1");
        }
        let text = super::info_memory::render(&file, args.max_seq_len, kv, args.json)?;
        return super::print_stdout(&text);
    }
    let report = Report::gather(&file)?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report.to_json(args.tensors))?;
        s.push('\n');
        s
    } else {
        report.to_text(args.tensors)
    };
    super::print_stdout(&text)
}

/// A metadata value that must have a given type when present; the message names the key.
fn opt<'a, T>(
    md: &'a Metadata,
    key: &str,
    get: impl Fn(&'a Metadata, &str) -> GgufResult<Option<T>>,
) -> Result<Option<T>> {
    get(md, key).with_context(|| format!("reading metadata key {key}"))
}

impl<'a> Report<'a> {
    fn gather(file: &'a GgufFile) -> Result<Report<'a>> {
        let md = file.metadata();
        let arch = opt(md, "general.architecture", Metadata::opt_str)?;
        let tokens = match md.get("tokenizer.ggml.tokens") {
            Some(_) => Some(md.get_str_array("tokenizer.ggml.tokens")?),
            None => None,
        };
        let mut special = Vec::new();
        for &(role, key) in SPECIAL_TOKENS {
            if let Some(id) = opt(md, key, Metadata::opt_u32)? {
                let text = tokens
                    .as_ref()
                    .and_then(|t| t.get(id as usize))
                    .map(|s| s.to_string());
                special.push(SpecialToken { role, id, text });
            }
        }
        let mut by_type: BTreeMap<GgmlType, TypeCount> = BTreeMap::new();
        for t in file.tensors() {
            let e = by_type.entry(t.ty).or_insert(TypeCount {
                ty: t.ty,
                tensors: 0,
                bytes: 0,
            });
            e.tensors += 1;
            e.bytes += t.size;
        }
        let prefix = arch.map(|a| format!("{a}."));
        let hparams = match &prefix {
            Some(p) => md
                .iter()
                .filter(|(k, _)| k.starts_with(p.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let context_length = match arch {
            Some(a) => opt(md, &format!("{a}.context_length"), Metadata::opt_u64)?,
            None => None,
        };
        Ok(Report {
            file,
            arch,
            name: opt(md, "general.name", Metadata::opt_str)?,
            n_params: file.tensors().iter().map(TensorInfo::n_elements).sum(),
            file_type: opt(md, "general.file_type", Metadata::opt_u32)?,
            context_length,
            hparams,
            tokenizer_model: opt(md, "tokenizer.ggml.model", Metadata::opt_str)?,
            tokenizer_pre: opt(md, "tokenizer.ggml.pre", Metadata::opt_str)?,
            vocab_size: tokens.as_ref().map(Vec::len),
            n_merges: md
                .get("tokenizer.ggml.merges")
                .and_then(Value::as_array)
                .map(<[Value]>::len),
            chat_template: md.contains_key("tokenizer.chat_template"),
            add_bos: opt(md, "tokenizer.ggml.add_bos_token", Metadata::opt_bool)?,
            add_eos: opt(md, "tokenizer.ggml.add_eos_token", Metadata::opt_bool)?,
            special,
            types: by_type.into_values().collect(),
        })
    }

    fn arch_prefix_len(&self) -> usize {
        self.arch.map_or(0, |a| a.len() + 1)
    }

    fn unsupported(&self) -> Vec<GgmlType> {
        self.types
            .iter()
            .map(|t| t.ty)
            .filter(|t| !t.is_supported())
            .collect()
    }

    fn file_type_name(&self) -> Option<String> {
        self.file_type.map(|id| {
            engine::inspect::file_type_name(id)
                .map_or_else(|| format!("unknown ({id})"), str::to_string)
        })
    }

    fn to_json(&self, with_tensors: bool) -> Json {
        let hparams: Map<String, Json> = self
            .hparams
            .iter()
            .map(|(k, v)| (k[self.arch_prefix_len()..].to_string(), value_json(v)))
            .collect();
        let special: Map<String, Json> = self
            .special
            .iter()
            .map(|s| (s.role.to_string(), json!({ "id": s.id, "text": s.text })))
            .collect();
        let types: Map<String, Json> = self
            .types
            .iter()
            .map(|t| {
                (
                    t.ty.name().to_string(),
                    json!({ "tensors": t.tensors, "bytes": t.bytes }),
                )
            })
            .collect();
        let mut out = json!({
            "path": self.file.path().display().to_string(),
            "gguf_version": self.file.version(),
            "splits": self.file.n_splits(),
            "file_size_bytes": self.file.file_size(),
            "metadata_count": self.file.metadata().len(),
            "architecture": self.arch,
            "architecture_supported": self.arch.is_some_and(|a| engine::supported_archs().contains(&a)),
            "name": self.name,
            "parameter_count": self.n_params,
            "file_type": self.file_type_name(),
            "file_type_id": self.file_type,
            "context_length": self.context_length,
            "hyperparameters": hparams,
            "tokenizer": {
                "model": self.tokenizer_model,
                "pre": self.tokenizer_pre,
                "vocab_size": self.vocab_size,
                "merges": self.n_merges,
                "add_bos": self.add_bos,
                "add_eos": self.add_eos,
            },
            "special_tokens": special,
            "chat_template": self.chat_template,
            "tensor_count": self.file.tensors().len(),
            "tensor_types": types,
            "unsupported_types": self.unsupported().iter().map(|t| t.name()).collect::<Vec<_>>(),
        });
        if with_tensors {
            let list: Vec<Json> = self
                .file
                .tensors()
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "type": t.ty.name(),
                        "shape": t.dims,
                        "offset": self.file.tensor_file_offset(t),
                        "size": t.size,
                        "split": t.split,
                    })
                })
                .collect();
            out["tensors"] = Json::Array(list);
        }
        out
    }

    fn to_text(&self, with_tensors: bool) -> String {
        let f = self.file;
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "{k:<16}{v}");
        };
        row("file", f.path().display().to_string());
        row("gguf version", f.version().to_string());
        row("splits", f.n_splits().to_string());
        row(
            "size on disk",
            format!("{} ({} bytes)", human_bytes(f.file_size()), f.file_size()),
        );
        row(
            "architecture",
            match self.arch {
                None => "(not set)".to_string(),
                Some(a) if engine::supported_archs().contains(&a) => format!("{a} (runs)"),
                Some(a) => format!("{a} (cannot run in torchless yet)"),
            },
        );
        row("name", self.name.unwrap_or("(not set)").to_string());
        row(
            "parameters",
            format!("{} ({})", human_count(self.n_params), self.n_params),
        );
        row(
            "file type",
            match (self.file_type_name(), self.file_type) {
                (Some(n), Some(id)) => format!("{n} ({id})"),
                _ => "(not set)".to_string(),
            },
        );
        row(
            "context length",
            self.context_length
                .map_or("(not set)".to_string(), |c| c.to_string()),
        );
        row("metadata keys", f.metadata().len().to_string());

        if let Some(arch) = self.arch {
            let _ = writeln!(s, "\nhyperparameters ({arch}.*)");
            let width = self
                .hparams
                .iter()
                .map(|(k, _)| k.len() - self.arch_prefix_len())
                .max()
                .unwrap_or(0);
            for (k, v) in &self.hparams {
                let _ = writeln!(
                    s,
                    "  {:<width$}  {}",
                    &k[self.arch_prefix_len()..],
                    short_value(v)
                );
            }
        }

        let _ = writeln!(s, "\ntokenizer");
        let unset = || "(not set)".to_string();
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let rows = [
            (
                "model",
                self.tokenizer_model.map_or_else(unset, str::to_string),
            ),
            ("pre", self.tokenizer_pre.map_or_else(unset, str::to_string)),
            (
                "vocab size",
                self.vocab_size.map_or_else(unset, |n| n.to_string()),
            ),
            (
                "merges",
                self.n_merges.map_or_else(unset, |n| n.to_string()),
            ),
            ("add bos", self.add_bos.map_or_else(unset, yes_no)),
            ("add eos", self.add_eos.map_or_else(unset, yes_no)),
            ("chat template", yes_no(self.chat_template)),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<15}{v}");
        }
        if !self.special.is_empty() {
            let _ = writeln!(s, "\nspecial tokens");
            for t in &self.special {
                let text = t
                    .text
                    .as_deref()
                    .map_or("(id outside the vocabulary)".to_string(), |x| {
                        format!("{x:?}")
                    });
                let _ = writeln!(s, "  {:<6}{:>8}  {text}", t.role, t.id);
            }
        }

        let _ = writeln!(s, "\ntensors: {}", f.tensors().len());
        for t in &self.types {
            let _ = writeln!(
                s,
                "  {:<8}{:>6} tensors  {:>12}",
                t.ty.name(),
                t.tensors,
                human_bytes(t.bytes)
            );
        }
        for t in self.unsupported() {
            let _ = writeln!(
                s,
                "note: tensor type {t} is not supported by torchless yet; this model cannot run"
            );
        }

        if with_tensors {
            let _ = writeln!(s);
            let name_w = f
                .tensors()
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let shapes: Vec<String> = f
                .tensors()
                .iter()
                .map(|t| format!("{:?}", t.dims))
                .collect();
            let shape_w = shapes.iter().map(String::len).max().unwrap_or(5).max(5);
            let split_col = f.n_splits() > 1;
            let _ = write!(
                s,
                "{:<name_w$}  {:<7}  {:<shape_w$}  {:>12}  {:>12}",
                "name", "type", "shape", "offset", "size"
            );
            let _ = writeln!(s, "{}", if split_col { "  split" } else { "" });
            for (t, shape) in f.tensors().iter().zip(&shapes) {
                let _ = write!(
                    s,
                    "{:<name_w$}  {:<7}  {:<shape_w$}  {:>12}  {:>12}",
                    t.name,
                    t.ty.name(),
                    shape,
                    f.tensor_file_offset(t),
                    t.size
                );
                if split_col {
                    let _ = write!(s, "  {:>5}", t.split + 1);
                }
                s.push('\n');
            }
        }
        s
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Bool(b) => Json::Bool(*b),
        // Shortest decimal that round-trips the f32, so 1e-5 prints as 1e-5, not 9.99999974e-6.
        Value::F32(x) => x
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number),
        Value::F64(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
        other => match other.as_integer() {
            Some(i) if i >= 0 => json!(i as u64),
            Some(i) => json!(i as i64),
            None => Json::Null,
        },
    }
}

fn short_value(v: &Value) -> String {
    match v {
        Value::Array(items) if items.len() > MAX_ARRAY_SHOWN => {
            let head: Vec<String> = items[..MAX_ARRAY_SHOWN]
                .iter()
                .map(Value::to_string)
                .collect();
            format!("[{}, ... ({} items)]", head.join(", "), items.len())
        }
        other => other.to_string(),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

fn human_count(n: u64) -> String {
    let v = n as f64;
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.2} K", v / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} M", v / 1e6),
        _ => format!("{:.2} B", v / 1e9),
    }
}

/// `info --backends`: every adapter wgpu reaches, and which one `--backend auto` would take.
fn backends(json: bool) -> Result<()> {
    let adapters = engine::device::list_adapters();
    // auto takes hardware GPUs only: a software device (lavapipe) is slower than the CPU.
    let auto = adapters
        .iter()
        .find(|a| a.device_type != "Cpu")
        .map(|a| a.name.clone());
    if json {
        let list: Vec<serde_json::Value> = adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name, "api": a.backend, "type": a.device_type, "driver": a.driver,
                    "max_storage_binding": a.max_storage_binding, "max_buffer": a.max_buffer,
                    "max_workgroup_storage": a.max_workgroup_storage,
                    "max_invocations": a.max_invocations,
                    "subgroups": a.subgroups, "subgroup_sizes": [a.subgroup_sizes.0, a.subgroup_sizes.1],
                    "shader_f16": a.shader_f16,
                    "memory": a.memory,
                })
            })
            .collect();
        let obj = serde_json::json!({"cpu": true, "adapters": list, "auto": auto.clone().unwrap_or("cpu".into())});
        return super::print_stdout(&format!("{obj}\n"));
    }
    let mut out = String::from(
        "cpu: always available (the default; the same tokens as llama.cpp's CPU build)\n",
    );
    if adapters.is_empty() {
        out += "no GPU adapter found (install a Vulkan driver: your GPU vendor's, or Mesa's \
                 mesa-vulkan-drivers)\n";
    }
    for a in &adapters {
        out += &format!("gpu: {a}\n");
    }
    out += &format!(
        "--backend auto would use: {}\n",
        auto.map_or("the CPU (no hardware GPU)".to_string(), |n| format!(
            "{n} (if it can run the model)"
        ))
    );
    super::print_stdout(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(137280), "134.06 KiB");
        assert_eq!(human_count(120128), "120.13 K");
        assert_eq!(human_count(134_515_008), "134.52 M");
    }

    #[test]
    fn values_to_json() {
        assert_eq!(value_json(&Value::F32(1e-5)), json!(1e-5));
        assert_eq!(value_json(&Value::I32(-4)), json!(-4));
        assert_eq!(
            value_json(&Value::Array(vec![Value::U8(1), Value::U8(2)])),
            json!([1, 2])
        );
        let long = Value::Array((0..10).map(Value::U32).collect());
        assert_eq!(
            short_value(&long),
            "[0, 1, 2, 3, 4, 5, 6, 7, ... (10 items)]"
        );
    }
}

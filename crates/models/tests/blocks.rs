//! The model blocks on their own, through small rewrites of the fixtures: fused weights
//! against the same weights as separate matrices, LongRoPE's factor choice, the residual
//! layouts, sliding-window layouts and rope-scaling errors.

use std::path::PathBuf;
use std::sync::Arc;

use gguf::{GgufFile, GgufWriter, Value};
use models::{KvDtype, Model, ModelError};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A tensor of the rewritten file: name, ggml dims, type, bytes.
type Tensor = (String, Vec<u64>, quant::GgmlType, Vec<u8>);

/// Writes `fixture` with metadata passed through `edit_kv` (None drops a key, extra keys
/// appended from `add_kv`) and tensors through `edit_tensors`, then loads it.
fn rewrite(
    fixture: &str,
    tag: &str,
    edit_kv: impl Fn(&str, &Value) -> Option<Value>,
    add_kv: &[(&str, Value)],
    edit_tensors: impl Fn(Vec<Tensor>) -> Vec<Tensor>,
) -> Result<Model, ModelError> {
    let src = GgufFile::open(data(fixture)).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        if let Some(v) = edit_kv(k, v) {
            w.add(k, v).unwrap();
        }
    }
    for (k, v) in add_kv {
        w.add(*k, v.clone()).unwrap();
    }
    let tensors = src
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dims.clone(),
                t.ty,
                src.tensor_data(t).to_vec(),
            )
        })
        .collect();
    let edited = edit_tensors(tensors);
    for (name, dims, ty, bytes) in &edited {
        w.add_tensor(name.clone(), dims, *ty, bytes).unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "torchless-blocks-{}-{tag}.gguf",
        std::process::id()
    ));
    w.write_file(&path).unwrap();
    let r = Model::load(Arc::new(GgufFile::open(&path).unwrap()));
    std::fs::remove_file(&path).ok();
    r
}

fn load(fixture: &str) -> Model {
    Model::load(Arc::new(GgufFile::open(data(fixture)).unwrap())).unwrap()
}

const PROMPT: [u32; 12] = [356, 296, 32, 113, 117, 105, 99, 107, 307, 114, 111, 119];

fn logits(m: &Model, max_seq_len: usize) -> Vec<f32> {
    let mut st = m.new_state(max_seq_len, KvDtype::F32);
    let mut all = m.forward(&mut st, &PROMPT, 0, true).unwrap();
    // and a decode step after the batch
    all.extend(m.forward(&mut st, &[42], PROMPT.len(), false).unwrap());
    all
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Splits an F32 tensor of `rows` rows into consecutive row ranges of the given sizes.
fn split_rows(t: &Tensor, parts: &[(&str, usize)]) -> Vec<Tensor> {
    let cols = t.1[0] as usize;
    assert_eq!(t.2, quant::GgmlType::F32);
    let mut at = 0;
    parts
        .iter()
        .map(|&(name, rows)| {
            let bytes = t.3[at * cols * 4..(at + rows) * cols * 4].to_vec();
            at += rows;
            (name.to_string(), vec![cols as u64, rows as u64], t.2, bytes)
        })
        .collect()
}

#[test]
fn fused_qkv_and_gate_up_give_the_bits_of_separate_matrices() {
    // phi3: attn_qkv = [Q | K | V] (64 + 64 + 64 rows), ffn_up = [gate | up] (128 + 128).
    let fused = load("phi3.gguf");
    let split = rewrite(
        "phi3.gguf",
        "split",
        |_, v| Some(v.clone()),
        &[],
        |ts| {
            ts.into_iter()
                .flat_map(|t| {
                    let blk =
                        t.0.rsplit_once(".attn_qkv.weight")
                            .map(|(b, _)| b.to_string());
                    if let Some(b) = blk {
                        let (q, k, v) = (
                            format!("{b}.attn_q.weight"),
                            format!("{b}.attn_k.weight"),
                            format!("{b}.attn_v.weight"),
                        );
                        return split_rows(&t, &[(&q, 64), (&k, 64), (&v, 64)]);
                    }
                    if let Some((b, _)) = t.0.rsplit_once(".ffn_up.weight") {
                        let (g, u) = (format!("{b}.ffn_gate.weight"), format!("{b}.ffn_up.weight"));
                        return split_rows(&t, &[(&g, 128), (&u, 128)]);
                    }
                    vec![t]
                })
                .collect()
        },
    )
    .unwrap();
    let (a, b) = (logits(&fused, 64), logits(&split, 64));
    assert_eq!(max_diff(&a, &b), 0.0, "fused and separate weights differ");
}

#[test]
fn longrope_uses_the_long_factors_beyond_the_original_context() {
    // The fixture's original context is 32, so every state (padded to 256 cells, as
    // llama.cpp pads n_ctx) uses the long factors. Raise the original context to 512: a
    // state of up to 512 positions now uses the short set, one of 513 the long set.
    let orig = load("phi3-longrope.gguf");
    let raised = rewrite(
        "phi3-longrope.gguf",
        "orig512",
        |k, v| {
            Some(if k == "phi3.rope.scaling.original_context_length" {
                Value::U32(512)
            } else {
                v.clone()
            })
        },
        &[],
        |ts| ts,
    )
    .unwrap();
    let long = logits(&orig, 64);
    assert_eq!(max_diff(&logits(&raised, 513), &long), 0.0);
    let short = logits(&raised, 512);
    assert!(
        max_diff(&short, &long) > 1e-3,
        "the factor sets are different"
    );
    // The short set is what the file says: copying it over the long one changes nothing
    // for a short context and makes a long one equal.
    let short_everywhere = rewrite(
        "phi3-longrope.gguf",
        "shortlong",
        |_, v| Some(v.clone()),
        &[],
        |ts| {
            let s = ts
                .iter()
                .find(|t| t.0 == "rope_factors_short.weight")
                .unwrap()
                .3
                .clone();
            ts.into_iter()
                .map(|mut t| {
                    if t.0 == "rope_factors_long.weight" {
                        t.3 = s.clone();
                    }
                    t
                })
                .collect()
        },
    )
    .unwrap();
    let raised_short = rewrite(
        "phi3-longrope.gguf",
        "orig512b",
        |k, v| {
            Some(if k == "phi3.rope.scaling.original_context_length" {
                Value::U32(512)
            } else {
                v.clone()
            })
        },
        &[],
        |ts| ts,
    )
    .unwrap();
    assert_eq!(
        max_diff(&logits(&short_everywhere, 64), &logits(&raised_short, 64)),
        0.0
    );
}

#[test]
fn longrope_without_its_factors_is_refused() {
    let err = rewrite(
        "phi3-longrope.gguf",
        "nofactors",
        |_, v| Some(v.clone()),
        &[],
        |ts| {
            ts.into_iter()
                .filter(|t| !t.0.starts_with("rope_factors"))
                .collect()
        },
    )
    .err()
    .expect("a longrope file without factors must not load");
    let msg = err.to_string();
    assert!(
        msg.contains("rope_factors_long") && msg.contains("longrope"),
        "{msg}"
    );
}

#[test]
fn unknown_rope_scaling_is_an_error_naming_it() {
    let err = rewrite(
        "llama.gguf",
        "scaling",
        |_, v| Some(v.clone()),
        &[(
            "llama.rope.scaling.type",
            Value::String("dynamic-ntk".into()),
        )],
        |ts| ts,
    )
    .err()
    .expect("an unknown rope scaling must not load");
    let msg = err.to_string();
    assert!(
        msg.contains("llama.rope.scaling.type") && msg.contains("dynamic-ntk"),
        "{msg}"
    );
}

#[test]
fn gptneox_residual_layout_follows_its_flag() {
    let parallel = load("gptneox.gguf");
    let sequential = rewrite(
        "gptneox.gguf",
        "seq",
        |k, v| {
            Some(if k == "gptneox.use_parallel_residual" {
                Value::Bool(false)
            } else {
                v.clone()
            })
        },
        &[],
        |ts| ts,
    )
    .unwrap();
    assert!(max_diff(&logits(&parallel, 64), &logits(&sequential, 64)) > 1e-2);
    // llama.cpp requires the key; so do we.
    let err = rewrite(
        "gptneox.gguf",
        "nokey",
        |k, v| (k != "gptneox.use_parallel_residual").then(|| v.clone()),
        &[],
        |ts| ts,
    )
    .err()
    .expect("missing use_parallel_residual");
    assert!(
        err.to_string().contains("gptneox.use_parallel_residual"),
        "{err}"
    );
}

#[test]
fn sliding_window_layouts_are_read_per_family() {
    // gemma2: no pattern key -> llama.cpp's default period 2 (even layers slide).
    let g2 = GgufFile::open(data("gemma2.gguf")).unwrap();
    let s = models::sliding_window(g2.metadata(), 4).unwrap();
    assert_eq!((s.window, s.layers), (8, vec![true, false, true, false]));
    // gemma3 fixture: explicit period 2.
    let g3 = GgufFile::open(data("gemma3.gguf")).unwrap();
    let s = models::sliding_window(g3.metadata(), 2).unwrap();
    assert_eq!((s.window, s.layers), (8, vec![true, false]));
    // Families without a window, and architectures this crate does not know.
    let l = GgufFile::open(data("llama.gguf")).unwrap();
    assert_eq!(models::sliding_window(l.metadata(), 2).unwrap().window, 0);
    // phi3 files may carry a window, which llama.cpp ignores (and so do we).
    let m = rewrite(
        "phi3.gguf",
        "swa",
        |_, v| Some(v.clone()),
        &[("phi3.attention.sliding_window", Value::U32(4))],
        |ts| ts,
    )
    .unwrap();
    assert_eq!(m.config().sliding_window, 0);
    assert_eq!(
        max_diff(&logits(&m, 64), &logits(&load("phi3.gguf"), 64)),
        0.0
    );
}

#[test]
fn every_dense_family_is_registered() {
    let archs = models::supported_archs();
    for a in [
        "llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi2", "phi3", "gptneox",
    ] {
        assert!(archs.contains(&a), "{a} missing from {archs:?}");
    }
}

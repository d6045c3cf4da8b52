//! Bad files give errors that name the key or tensor at fault (never a panic).

use std::path::PathBuf;
use std::sync::Arc;

use gguf::{GgufFile, GgufWriter, Value};
use models::{KvDtype, Model, ModelError};

fn fixture() -> GgufFile {
    GgufFile::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf")).unwrap()
}

/// Rewrites the llama fixture through `edit_kv` / `edit_tensor` and loads the result.
fn load_modified(
    tag: &str,
    edit_kv: impl Fn(&str, &Value) -> Option<Value>,
    edit_dims: impl Fn(&str, &[u64]) -> Vec<u64>,
) -> Result<Model, ModelError> {
    let src = fixture();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        if let Some(v) = edit_kv(k, v) {
            w.add(k, v).unwrap();
        }
    }
    for t in src.tensors() {
        let dims = edit_dims(&t.name, &t.dims);
        w.add_tensor(t.name.clone(), &dims, t.ty, src.tensor_data(t))
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "torchless-models-{}-{tag}.gguf",
        std::process::id()
    ));
    w.write_file(&path).unwrap();
    let r = Model::load(Arc::new(GgufFile::open(&path).unwrap()));
    std::fs::remove_file(&path).ok();
    r
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let e = load_modified(
        "arch",
        |k, v| {
            Some(if k == "general.architecture" {
                Value::String("mamba".into())
            } else {
                v.clone()
            })
        },
        |_, d| d.to_vec(),
    )
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("mamba") && msg.contains("llama") && msg.contains("gemma3"),
        "{msg}"
    );
}

#[test]
fn missing_and_inconsistent_keys_are_named() {
    let e = load_modified(
        "nokey",
        |k, v| (k != "llama.block_count").then(|| v.clone()),
        |_, d| d.to_vec(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("llama.block_count"), "{e}");
    let e = load_modified(
        "kvheads",
        |k, v| {
            Some(if k == "llama.attention.head_count_kv" {
                Value::U32(3)
            } else {
                v.clone()
            })
        },
        |_, d| d.to_vec(),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("llama.attention.head_count_kv"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    // Same bytes, transposed dims: [64, 32] stored as [32, 64].
    let e = load_modified(
        "shape",
        |_, v| Some(v.clone()),
        |n, d| {
            if n == "blk.1.attn_k.weight" {
                vec![d[1], d[0]]
            } else {
                d.to_vec()
            }
        },
    )
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("blk.1.attn_k.weight") && msg.contains("[64, 32]") && msg.contains("[32, 64]"),
        "{msg}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let model = Model::load(Arc::new(fixture())).unwrap();
    let mut st = model.new_state(8, KvDtype::F16);
    assert!(model.forward(&mut st, &[], 0, false).is_err());
    assert!(model
        .forward(&mut st, &[360], 0, false)
        .unwrap_err()
        .to_string()
        .contains("360"));
    assert!(model.forward(&mut st, &[1; 9], 0, false).is_err());
    model.forward(&mut st, &[1, 2], 0, false).unwrap();
    assert!(model.forward(&mut st, &[3], 5, false).is_err()); // gap
                                                              // re-running from an earlier position replaces the cache and is deterministic
    let a = model.forward(&mut st, &[3], 2, false).unwrap();
    st.truncate(2);
    let b = model.forward(&mut st, &[3], 2, false).unwrap();
    assert_eq!(a, b);
}

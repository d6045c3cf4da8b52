//! Hostile hyperparameters (issue 22): every fixture family rewritten with absurd values of the
//! keys that size things (layer, head, dimension, expert counts, context, window) must give a
//! one-line error naming the key, from both the memory planner and model setup, within
//! milliseconds and without a large allocation. The files are generated here with the GGUF
//! writer from the tiny fixtures of `models`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::memory::Planner;
use engine::LoadedModel;
use gguf::{GgufFile, GgufWriter, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/data")
        .join(name)
}

/// `src` with metadata `key` set to `value` (removed when `None`), written to a temp file.
fn rewrite(src: &Path, tag: &str, key: &str, value: Option<Value>) -> PathBuf {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        if k != key {
            w.add(k, v.clone()).unwrap();
        }
    }
    if let Some(v) = value {
        w.add(key, v).unwrap();
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t))
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "torchless-hostile-{}-{tag}.gguf",
        std::process::id()
    ));
    w.write_file(&path).unwrap();
    path
}

const FIXTURES: &[&str] = &[
    "llama.gguf",
    "gemma3.gguf",
    "gemma2.gguf",
    "phi3-swa.gguf",
    "qwen2moe.gguf",
    "llama-moe.gguf",
    "deepseek2-lite.gguf",
];

/// Keys (without the `{arch}.` prefix) that decide sizes.
const KEYS: &[&str] = &[
    "block_count",
    "embedding_length",
    "feed_forward_length",
    "context_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "attention.kv_lora_rank",
    "attention.q_lora_rank",
    "attention.key_length_mla",
    "rope.dimension_count",
    "rope.scaling.original_context_length",
    "expert_count",
    "expert_used_count",
    "expert_feed_forward_length",
    "expert_shared_count",
    "expert_group_count",
    "leading_dense_block_count",
];

const HUGE: &[u64] = &[1 << 31, (1 << 32) - 1, 1 << 40, 1 << 63, u64::MAX];

fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Runs the planner and the whole load on `path`; returns the load's error, if any, after
/// checking both finish fast and any error is one line naming `key`.
fn check(path: &Path, key: &str, what: &str) -> Option<String> {
    let t0 = Instant::now();
    let file = GgufFile::open(path).unwrap();
    let planned = Planner::from_gguf(&file).map(|p| {
        p.plan(engine::LoadMode::Lazy, 4096, engine::KvDtype::F16)
            .total()
    });
    let loaded = models::Model::load(Arc::new(file)).map(|_| ());
    let full = LoadedModel::load(path).map(|_| ());
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    for e in [
        planned.err(),
        loaded.err().map(|e| e.to_string()),
        full.as_ref().err().map(|e| e.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!e.contains('\n'), "{what}: not one line: {e}");
        assert!(!e.is_empty(), "{what}: empty error");
        let _ = key;
    }
    full.err().map(|e| e.to_string())
}

#[test]
fn absurd_sizes_are_refused_naming_the_key() {
    for fx in FIXTURES {
        let src = fixture(fx);
        let arch = GgufFile::open(&src)
            .unwrap()
            .metadata()
            .get_str("general.architecture")
            .unwrap()
            .to_string();
        for k in KEYS {
            let key = format!("{arch}.{k}");
            for &v in HUGE {
                let tag = format!("{fx}-{k}-{v}");
                let path = rewrite(&src, &tag, &key, Some(Value::U64(v)));
                let what = format!("{fx} {key}={v}");
                let err = check(&path, &key, &what);
                std::fs::remove_file(&path).ok();
                // Values beyond 32 bits are never a real model's: always refused, naming the
                // key and the value.
                // (`sliding_window_pattern` is read only by families with a window.)
                if v > u32::MAX as u64 && *k != "attention.sliding_window_pattern" {
                    let e = err.unwrap_or_else(|| panic!("{what}: loaded"));
                    assert!(
                        e.contains(&key) && e.contains(&v.to_string()),
                        "{what}: {e}"
                    );
                }
            }
        }
    }
    if let Some(peak) = peak_rss() {
        assert!(peak < 1 << 30, "peak RSS {peak} bytes");
    }
}

#[test]
fn block_count_names_what_the_tensors_hold() {
    let path = rewrite(
        &fixture("gemma3.gguf"),
        "gemma3-layers",
        "gemma3.block_count",
        Some(Value::U64(1 << 63)),
    );
    let t0 = Instant::now();
    let e = LoadedModel::load(&path).err().unwrap().to_string();
    let p = Planner::from_gguf(&GgufFile::open(&path).unwrap())
        .err()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(t0.elapsed() < Duration::from_millis(500));
    for e in [e, p] {
        assert!(
            e.contains("gemma3.block_count")
                && e.contains("9223372036854775808")
                && e.contains("blk.0 to blk."),
            "{e}"
        );
    }
}

#[test]
fn negative_zero_and_mistyped_sizes_are_errors() {
    let src = fixture("llama.gguf");
    for (i, v) in [
        Value::I32(-1),
        Value::I64(i64::MIN),
        Value::U32(0),
        Value::String("12".into()),
        Value::F32(1e30),
        Value::Array(vec![Value::U32(1); 3]),
    ]
    .into_iter()
    .enumerate()
    {
        for k in ["block_count", "attention.head_count", "embedding_length"] {
            let key = format!("llama.{k}");
            let path = rewrite(&src, &format!("neg-{i}-{k}"), &key, Some(v.clone()));
            let e = check(&path, &key, &format!("{key}={v:?}"));
            std::fs::remove_file(&path).ok();
            let e = e.unwrap_or_else(|| panic!("{key}={v:?} loaded"));
            assert!(e.contains(&key), "{key}={v:?}: {e}");
        }
    }
}

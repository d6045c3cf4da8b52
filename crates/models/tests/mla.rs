//! DeepSeek-V2 multi-head latent attention through the whole model: a prompt run as one
//! batch gives the logits of the same tokens fed one at a time (F32 cache: the same
//! arithmetic up to summation order; F16: flash attention's decode rows vs its tiled
//! kernel), the cache holds exactly `(kv_lora_rank + n_rot)` elements per position and
//! layer, and files with MoE layers are refused until that block lands.

use std::path::PathBuf;
use std::sync::Arc;

use gguf::GgufFile;
use models::{KvDtype, Model};

fn load(name: &str) -> Result<Model, models::ModelError> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"));
    Model::load(Arc::new(GgufFile::open(p).unwrap()))
}

/// 80 tokens: the batch crosses the tiled flash kernel's 64-query threshold.
fn tokens() -> Vec<u32> {
    (0..80u32).map(|i| (i * 37 + 11) % 356).collect()
}

#[test]
fn prompt_batch_equals_token_by_token_decoding() {
    for name in ["deepseek2-dense", "deepseek2-lite-dense"] {
        let m = load(name).unwrap();
        let nv = m.config().n_vocab;
        let toks = tokens();
        for (kv, tol) in [(KvDtype::F32, 1e-4f32), (KvDtype::F16, 5e-2)] {
            let mut s = m.new_state(128, kv);
            let batch = m.forward(&mut s, &toks, 0, true).unwrap();
            let mut s = m.new_state(128, kv);
            let mut worst = 0f32;
            for (p, &t) in toks.iter().enumerate() {
                let row = m.forward(&mut s, &[t], p, false).unwrap();
                for (a, b) in row.iter().zip(&batch[p * nv..(p + 1) * nv]) {
                    worst = worst.max((a - b).abs());
                }
            }
            assert!(worst <= tol, "{name} {kv:?}: {worst}");
            eprintln!("{name} {kv:?}: max |batch - decode| = {worst:e}");
        }
    }
}

#[test]
fn latent_cache_holds_kv_lora_rank_plus_rope_per_position() {
    let m = load("deepseek2-dense").unwrap();
    // 3 layers x (32 + 8) elements per position.
    for len in [1, 100, 4096] {
        assert_eq!(m.new_state(len, KvDtype::F16).kv_bytes(), 3 * 40 * 2 * len);
        assert_eq!(m.new_state(len, KvDtype::F32).kv_bytes(), 3 * 40 * 4 * len);
    }
}

#[test]
fn mla_keys_without_their_lengths_are_refused_by_name() {
    // Split attn_k_b / attn_v_b with absorbed key lengths but no key/value_length_mla: not
    // the older attn_kv_b layout either (that runs: tests/fixtures.rs deepseek2-kvb), so
    // the error names what is inconsistent.
    let src = GgufFile::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/deepseek2-dense.gguf"),
    )
    .unwrap();
    let mut w = gguf::GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        if !k.ends_with("_length_mla") {
            w.add(k, v.clone()).unwrap();
        }
    }
    for t in src.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, src.tensor_data(t))
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!("torchless-mla-kvb-{}.gguf", std::process::id()));
    w.write_file(&path).unwrap();
    let e = Model::load(Arc::new(GgufFile::open(&path).unwrap()))
        .err()
        .expect("refused")
        .to_string();
    let _ = std::fs::remove_file(&path);
    assert!(
        e.contains("key_length_mla") && e.contains("attn_kv_b") && e.contains("head_count_kv"),
        "{e}"
    );
}

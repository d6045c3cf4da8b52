//! The dense decoder through the backend seam (`models::backend` over `compute::backend::Cpu`)
//! gives `Model::forward`'s logits bit for bit on every dense fixture, with both KV cache
//! types: a prompt with every position's logits, then single-token steps. So the trait has
//! everything the CPU forward pass needs, in the arithmetic it needs, and a GPU backend
//! behind it runs the same blocks in the same order.

use std::path::PathBuf;
use std::sync::Arc;

use compute::backend::Cpu;
use models::backend::BackendModel;
use models::{KvDtype, Model};

fn load(name: &str) -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"));
    Model::load(Arc::new(gguf::GgufFile::open(path).expect("open fixture"))).expect("load")
}

fn check(name: &str, kv: KvDtype) {
    let model = load(name);
    let nv = model.config().n_vocab as u32;
    let cpu = Cpu::new(kv);
    let bm = BackendModel::load(&model, &cpu).unwrap();
    let mut bs = bm.new_state(&cpu, 96, models::DEFAULT_UBATCH).unwrap();
    let mut state = model.new_state(96, kv);
    // 70 tokens: F16 caches take the tiled flash-attention kernel from 64 queries.
    let prompt: Vec<u32> = (0..70).map(|i| (i * 37 + 5) % nv).collect();
    let want = model.forward(&mut state, &prompt, 0, true).unwrap();
    let got = bm.forward(&cpu, &mut bs, &prompt, 0, true).unwrap();
    assert!(got == want, "{name} {kv:?}: prompt logits differ");
    for step in 0..4u32 {
        let tok = [(step * 101 + 3) % nv];
        let pos = prompt.len() + step as usize;
        let want = model.forward(&mut state, &tok, pos, false).unwrap();
        let got = bm.forward(&cpu, &mut bs, &tok, pos, false).unwrap();
        assert!(got == want, "{name} {kv:?}: step {step} logits differ");
    }
}

#[test]
fn every_dense_fixture_bit_for_bit() {
    for name in [
        "llama",
        "llama-q8_0",
        "llama-f16",
        "llama-rope-llama3",
        "llama-yarn",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "gemma2-pattern3",
        "gemma3",
        "phi2",
        "phi2-q8_0",
        "phi3",
        "phi3-swa",
        "phi3-longrope",
        "gptneox",
        "gptneox-seq",
    ] {
        for kv in [KvDtype::F16, KvDtype::F32] {
            check(name, kv);
        }
    }
}

#[test]
fn experts_and_latent_attention_are_refused() {
    let cpu = Cpu::new(KvDtype::F16);
    for (name, what) in [
        ("llama-moe", "mixture of experts"),
        ("qwen3moe", "mixture of experts"),
        ("deepseek2", "latent attention"),
    ] {
        let e = BackendModel::load(&load(name), &cpu).err().unwrap();
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
}

//! The decoder through the backend seam (`models::backend` over `compute::backend::Cpu`)
//! gives `Model::forward`'s logits bit for bit on every fixture (dense, mixture of experts,
//! latent attention), with both KV cache types: a prompt with every position's logits, then single-token steps. So the trait has
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

/// The fixture with lazy paging on: the weights the kernels read go back to the file's
/// residency hook.
fn load_lazy(name: &str) -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"));
    let mut file = gguf::GgufFile::open(path).expect("open fixture");
    file.set_release_pages(true);
    Model::load(Arc::new(file)).expect("load")
}

fn check(name: &str, kv: KvDtype) {
    check_against(name, kv, &load(name));
}

/// `forward` on `name` against the seam over `seam_model` (the same file, maybe paged).
fn check_against(name: &str, kv: KvDtype, seam_model: &Model) {
    let model = load(name);
    let nv = model.config().n_vocab as u32;
    let cpu = Cpu::new(kv);
    let bm = BackendModel::load(seam_model, &cpu).unwrap();
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

/// Mixtures of experts (routed on the backend, experts by id from the stacked tensors,
/// shared experts plain or gated) and latent attention (absorbed, without Q compression,
/// decompressed through `attn_kv_b`), bit for bit too.
#[test]
fn every_moe_and_mla_fixture_bit_for_bit() {
    for name in [
        "llama-moe",
        "qwen2moe",
        "qwen3moe",
        "deepseek2",
        "deepseek2-lite",
        "deepseek2-v3",
        "deepseek2-kvb",
        "deepseek2-dense",
        "deepseek2-lite-dense",
    ] {
        for kv in [KvDtype::F16, KvDtype::F32] {
            check(name, kv);
        }
    }
}

/// The CPU backend borrows its weights from the model's file (no copy) and, with lazy
/// paging on, hands them back through the file's residency hook as the forward pass does:
/// the same logits bit for bit on a dense, a MoE and a latent-attention fixture.
#[test]
fn lazily_paged_weights_bit_for_bit() {
    for name in ["llama-q8_0", "qwen2moe", "deepseek2-v3"] {
        check_against(name, KvDtype::F16, &load_lazy(name));
    }
}

/// Several sequences through the seam in one pass (prompts longer than the micro-batch,
/// every kind of logits request, then a decode round) give `Model::forward_multi`'s logits
/// bit for bit (both sides multiply the same rows together): dense, MoE (every sequence's
/// rows routed and grouped by expert together) and latent attention.
#[test]
fn several_sequences_bit_for_bit() {
    for name in ["llama-q8_0", "qwen2moe", "deepseek2-v3", "deepseek2-kvb"] {
        several_sequences(name);
    }
}

fn several_sequences(name: &str) {
    use models::backend::BackendSeq;
    use models::{Logits, SeqBatch, StateOptions, Workspace};
    let model = load(name);
    let nv = model.config().n_vocab as u32;
    let cpu = Cpu::new(KvDtype::F16);
    let bm = BackendModel::load(&model, &cpu).unwrap();
    let ub = 16;
    let prompts: Vec<Vec<u32>> = [37usize, 5, 20]
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            (0..n as u32)
                .map(|i| (i * 31 + 7 * k as u32 + 1) % nv)
                .collect()
        })
        .collect();
    let opts = StateOptions {
        ubatch: ub,
        ..Default::default()
    };
    let mut cs: Vec<_> = (0..3)
        .map(|_| model.new_state_with(64, KvDtype::F16, opts))
        .collect();
    let mut bs: Vec<_> = (0..3)
        .map(|_| bm.new_state(&cpu, 64, ub).unwrap())
        .collect();
    let mut ws = Workspace::new();
    let mut work = bm.new_work(&cpu, 1);
    let wants = [Logits::All, Logits::Last, Logits::None];
    let mut want = Vec::new();
    {
        let mut batch: Vec<SeqBatch> = cs
            .iter_mut()
            .zip(&prompts)
            .zip(wants)
            .map(|((s, p), l)| SeqBatch::new(s, p, 0, l))
            .collect();
        model.forward_multi(&mut batch, &mut ws, &mut want).unwrap();
    }
    let mut seqs: Vec<BackendSeq<Cpu>> = bs
        .iter_mut()
        .zip(&prompts)
        .zip(wants)
        .map(|((s, p), l)| BackendSeq {
            state: s,
            tokens: p,
            start_pos: 0,
            logits: l,
        })
        .collect();
    let got = bm.forward_multi(&cpu, &mut seqs, &mut work).unwrap();
    assert_eq!(got.len(), (37 + 1) * nv as usize);
    assert!(got == want, "{name}: prompt logits differ");
    // One decode round for all three.
    let next: Vec<[u32; 1]> = (0..3).map(|k| [(k * 11 + 3) as u32]).collect();
    let mut want = Vec::new();
    {
        let mut batch: Vec<SeqBatch> = cs
            .iter_mut()
            .zip(&next)
            .zip(&prompts)
            .map(|((s, t), p)| SeqBatch::new(s, t, p.len(), Logits::Last))
            .collect();
        model.forward_multi(&mut batch, &mut ws, &mut want).unwrap();
    }
    let mut seqs: Vec<BackendSeq<Cpu>> = bs
        .iter_mut()
        .zip(&next)
        .zip(&prompts)
        .map(|((s, t), p)| BackendSeq {
            state: s,
            tokens: t,
            start_pos: p.len(),
            logits: Logits::Last,
        })
        .collect();
    let got = bm.forward_multi(&cpu, &mut seqs, &mut work).unwrap();
    assert!(got == want, "{name}: decode logits differ");
}

/// A model split between two backends (here the CPU twice, as `--gpu-layers` splits it
/// between a GPU and the CPU) gives the unsplit logits bit for bit at every split point:
/// the hidden state crosses exactly, each part keeps its own layers' caches. Prompts over
/// several micro-batches, several sequences together, single-token steps, truncation.
#[test]
fn split_between_backends_bit_for_bit() {
    use models::backend::{BackendSeq, SplitModel, SplitSeq};
    use models::Logits;
    for name in [
        "llama",
        "gemma3",
        "phi2",
        "qwen3",
        "qwen2moe",
        "deepseek2-v3",
        "deepseek2-kvb",
    ] {
        let model = load(name);
        let nv = model.config().n_vocab as u32;
        let n_layer = model.config().n_layer;
        assert!(n_layer >= 2, "{name}: {n_layer} layers");
        let (f, l) = (Cpu::new(KvDtype::F16), Cpu::new(KvDtype::F16));
        let bm = BackendModel::load(&model, &f).unwrap();
        let ub = 16;
        let prompt: Vec<u32> = (0..40).map(|i| (i * 37 + 5) % nv).collect();
        let mut whole = bm.new_state(&f, 64, ub).unwrap();
        let want = bm.forward(&f, &mut whole, &prompt, 0, true).unwrap();
        let steps: Vec<Vec<f32>> = (0..3u32)
            .map(|k| {
                let tok = [(k * 101 + 3) % nv];
                bm.forward(&f, &mut whole, &tok, prompt.len() + k as usize, false)
                    .unwrap()
            })
            .collect();
        assert!(SplitModel::load(&model, &f, &l, 0).is_err());
        assert!(SplitModel::load(&model, &f, &l, n_layer).is_err());
        for n in 1..n_layer {
            let sm = SplitModel::load(&model, &f, &l, n).unwrap();
            let mut s = sm.new_state((&f, &l), 64, ub).unwrap();
            let got = sm.forward((&f, &l), &mut s, &prompt, 0, true).unwrap();
            assert!(got == want, "{name} split {n}: prompt logits differ");
            for (k, want) in steps.iter().enumerate() {
                let tok = [(k as u32 * 101 + 3) % nv];
                let got = sm
                    .forward((&f, &l), &mut s, &tok, prompt.len() + k, false)
                    .unwrap();
                assert!(got == *want, "{name} split {n}: step {k} logits differ");
            }
            // Back to the prompt, then two sequences together (against the unsplit model
            // given the same batch: row counts may change a float product's order).
            assert_eq!(s.truncate(prompt.len()), prompt.len());
            let mut t = sm.new_state((&f, &l), 64, ub).unwrap();
            let mut work = sm.new_work((&f, &l), 1);
            let tok = [3u32];
            let mut seqs = [
                SplitSeq {
                    state: &mut s,
                    tokens: &tok,
                    start_pos: prompt.len(),
                    logits: Logits::Last,
                },
                SplitSeq {
                    state: &mut t,
                    tokens: &prompt,
                    start_pos: 0,
                    logits: Logits::All,
                },
            ];
            let got = sm.forward_multi((&f, &l), &mut seqs, &mut work).unwrap();
            let mut w1 = bm.new_state(&f, 64, ub).unwrap();
            bm.forward(&f, &mut w1, &prompt, 0, false).unwrap();
            let mut w2 = bm.new_state(&f, 64, ub).unwrap();
            let mut seqs = [
                BackendSeq {
                    state: &mut w1,
                    tokens: &tok,
                    start_pos: prompt.len(),
                    logits: Logits::Last,
                },
                BackendSeq {
                    state: &mut w2,
                    tokens: &prompt,
                    start_pos: 0,
                    logits: Logits::All,
                },
            ];
            let want2 = bm
                .forward_multi(&f, &mut seqs, &mut bm.new_work(&f, 1))
                .unwrap();
            assert_eq!(got.len(), (1 + prompt.len()) * nv as usize);
            assert!(got == want2, "{name} split {n}: batched logits differ");
        }
    }
}

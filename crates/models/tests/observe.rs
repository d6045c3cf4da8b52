//! The activation observer (`State::set_observer`, what `torchless imatrix` collects with)
//! sees every weight matrix of the fixtures with the rows it is really multiplied by, per
//! expert for stacks, and changes nothing in the forward pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use models::{ActivationObserver, KvDtype, MatmulInput, Model};

fn load(name: &str) -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"));
    Model::load(Arc::new(gguf::GgufFile::open(path).expect("open fixture"))).expect("load")
}

/// Per weight and expert: (rows seen, columns, the last rows seen).
type Seen = BTreeMap<(String, Option<usize>), (usize, usize, Vec<f32>)>;

struct Recorder(Arc<Mutex<Seen>>);

impl ActivationObserver for Recorder {
    fn observe(&mut self, m: MatmulInput<'_>) {
        assert!(m.n > 0 && m.rows.len().is_multiple_of(m.n), "{}", m.weight);
        let mut seen = self.0.lock().unwrap();
        let e = seen
            .entry((m.weight.to_string(), m.expert.map(|(x, _)| x)))
            .or_insert((0, m.rows.len() / m.n, Vec::new()));
        e.0 += m.n;
        e.2 = m.rows.to_vec();
    }
}

fn check(name: &str) {
    let model = load(name);
    let cfg = model.config().clone();
    let n = 20usize;
    let prompt: Vec<u32> = (0..n as u32)
        .map(|i| (i * 37 + 5) % cfg.n_vocab as u32)
        .collect();
    let plain = model
        .forward(&mut model.new_state(64, KvDtype::F32), &prompt, 0, true)
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::new()));
    let mut state = model.new_state(64, KvDtype::F32);
    assert!(state
        .set_observer(Some(Box::new(Recorder(seen.clone()))))
        .is_none());
    let logits = model.forward(&mut state, &prompt, 0, true).unwrap();
    assert!(state.set_observer(None).is_some());
    assert_eq!(logits, plain, "{name}: observing changed the logits");

    let seen = seen.lock().unwrap();
    let file = model.file();
    let md = file.metadata();
    let arch = md.get_str("general.architecture").unwrap();
    let used = md
        .get_u32(&format!("{arch}.expert_used_count"))
        .map_or(0, |v| v as usize);
    // Every matrix but the embedding lookup, with its column count; experts per expert.
    for t in file.tensors() {
        if t.dims.len() < 2 || t.dims[1] == 1 || t.name == "token_embd.weight" {
            continue;
        }
        let cols = t.dims[0] as usize;
        let experts = t.dims.get(2).map_or(1, |&e| e as usize);
        if experts == 1 {
            let Some(&(rows, c, _)) = seen.get(&(t.name.clone(), None)) else {
                panic!("{name}: {} not observed", t.name)
            };
            assert_eq!((rows, c), (n, cols), "{name}: {}", t.name);
        } else {
            let rows: usize = (0..experts)
                .filter_map(|x| seen.get(&(t.name.clone(), Some(x))))
                .inspect(|s| assert_eq!(s.1, cols, "{name}: {}", t.name))
                .map(|s| s.0)
                .sum();
            assert_eq!(rows, n * used, "{name}: {}", t.name);
        }
    }
    for (w, _) in seen.keys() {
        assert!(
            file.tensor(w).is_some(),
            "{name}: observed {w}, not a tensor"
        );
    }
    // The rows shown for the output projection are its input: they give the logits.
    let out = file
        .tensor("output.weight")
        .or_else(|| file.tensor("token_embd.weight"))
        .unwrap();
    let (_, e, h) = &seen[&(out.name.clone(), None)];
    let mut w = vec![0f32; e * cfg.n_vocab];
    quant::dequantize_row(out.ty, file.tensor_data(out), &mut w).unwrap();
    for (t, ht) in h.chunks_exact(*e).enumerate() {
        for v in (0..cfg.n_vocab).step_by(7) {
            let wv = &w[v * e..(v + 1) * e];
            let dot: f64 = ht.iter().zip(wv).map(|(a, b)| *a as f64 * *b as f64).sum();
            let size: f64 = ht.iter().zip(wv).map(|(a, b)| (a * b).abs() as f64).sum();
            let got = logits[t * cfg.n_vocab + v] as f64;
            assert!(
                (got - dot).abs() <= 1e-4 * size.max(1e-6),
                "{name}: logit {t},{v}: {got} vs {dot}"
            );
        }
    }
}

#[test]
fn dense_fused_plain_and_expert_models() {
    for name in ["llama", "phi3", "gptneox", "qwen2moe", "qwen3moe"] {
        check(name);
    }
}

//! `Model::forward_multi`: several sequences in one forward pass give each sequence the
//! logits (within a tiny tolerance: a matmul may pick another tile for another row count)
//! and the greedy continuation it gets alone. Run on every fixture architecture (dense, MoE,
//! latent attention, the sliding-window gemma3 ring) and on SmolLM2.

use std::path::PathBuf;
use std::sync::Arc;

use models::{KvDtype, Logits, Model, SeqBatch, State, StateOptions, Workspace};

fn fixture(name: &str) -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"));
    let file = gguf::GgufFile::open(path).expect("open fixture");
    Model::load(Arc::new(file)).expect("load fixture")
}

fn fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".gguf").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Deterministic pseudo-random prompt of `n` ids (seeded), avoiding id 0.
fn prompt(m: &Model, seed: u64, n: usize) -> Vec<u32> {
    let nv = m.config().n_vocab as u64;
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (1 + (x >> 33) % (nv - 1)) as u32
        })
        .collect()
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn new_state(m: &Model, ubatch: usize) -> State {
    let o = StateOptions {
        ubatch,
        swa_full: false,
    };
    m.new_state_with(128, KvDtype::F16, o)
}

/// The prompt alone in one call, then `steps` greedy tokens: logits of every step.
fn alone(m: &Model, prompt: &[u32], steps: usize, ubatch: usize) -> Vec<Vec<f32>> {
    let mut st = new_state(m, ubatch);
    let mut out = vec![m.forward(&mut st, prompt, 0, false).unwrap()];
    for pos in prompt.len()..prompt.len() + steps - 1 {
        let next = argmax(out.last().unwrap());
        out.push(m.forward(&mut st, &[next], pos, false).unwrap());
    }
    out
}

/// One sequence's progress in the staggered run.
struct Seq {
    prompt: Vec<u32>,
    /// Step at which its prompt starts being fed.
    join: usize,
    fed: usize,
    next: Option<u32>,
    logits: Vec<Vec<f32>>,
    state: State,
}

/// All sequences in one `forward_multi` per step, as a scheduler runs them: sequence `i`
/// joins at step `join[i]`, its prompt fed `chunk` tokens per step (no logits until the
/// last chunk) while the others decode.
fn together(
    m: &Model,
    prompts: &[Vec<u32>],
    joins: &[usize],
    chunk: usize,
    steps: usize,
    ubatch: usize,
) -> Vec<Vec<Vec<f32>>> {
    let mut seqs: Vec<Seq> = prompts
        .iter()
        .zip(joins)
        .map(|(p, &join)| Seq {
            prompt: p.clone(),
            join,
            fed: 0,
            next: None,
            logits: Vec::new(),
            state: new_state(m, ubatch),
        })
        .collect();
    let mut ws = Workspace::new();
    let mut logits = Vec::new();
    let nv = m.config().n_vocab;
    for step in 0.. {
        let mut batch = Vec::new();
        let mut who = Vec::new();
        for (i, s) in seqs.iter_mut().enumerate() {
            if step < s.join || s.logits.len() == steps {
                continue;
            }
            let (tokens, start, want) = match s.next {
                Some(_) => (
                    std::slice::from_ref(s.next.as_ref().unwrap()),
                    s.fed,
                    Logits::Last,
                ),
                None => {
                    let end = (s.fed + chunk).min(s.prompt.len());
                    let want = if end == s.prompt.len() {
                        Logits::Last
                    } else {
                        Logits::None
                    };
                    (&s.prompt[s.fed..end], s.fed, want)
                }
            };
            if want == Logits::Last {
                who.push(i);
            }
            batch.push(SeqBatch::new(&mut s.state, tokens, start, want));
        }
        if batch.is_empty() {
            if seqs.iter().all(|s| s.logits.len() == steps) {
                break;
            }
            continue;
        }
        let fed: Vec<usize> = batch.iter().map(|b| b.tokens.len()).collect();
        m.forward_multi(&mut batch, &mut ws, &mut logits).unwrap();
        drop(batch);
        assert_eq!(logits.len(), who.len() * nv);
        let mut k = 0;
        for (s, n) in seqs
            .iter_mut()
            .filter(|s| step >= s.join && s.logits.len() < steps)
            .zip(fed)
        {
            s.fed += n;
            if s.next.is_some() || s.fed == s.prompt.len() {
                let row = logits[k * nv..(k + 1) * nv].to_vec();
                k += 1;
                s.next = Some(argmax(&row));
                s.logits.push(row);
            }
        }
        assert_eq!(k, who.len());
    }
    seqs.into_iter().map(|s| s.logits).collect()
}

/// Every sequence's logits and greedy ids in the batched run against its run alone.
fn check(m: &Model, name: &str, prompts: &[Vec<u32>], joins: &[usize], chunk: usize, tol: f32) {
    let steps = 8;
    let ubatch = 6;
    let got = together(m, prompts, joins, chunk, steps, ubatch);
    let mut worst = 0f32;
    for (i, p) in prompts.iter().enumerate() {
        let want = alone(m, p, steps, ubatch);
        assert_eq!(got[i].len(), steps, "{name} seq {i}");
        for (t, (g, w)) in got[i].iter().zip(&want).enumerate() {
            assert_eq!(
                argmax(g),
                argmax(w),
                "{name} seq {i} step {t}: greedy ids differ"
            );
            // Relative to the row's largest logit.
            let scale = w.iter().fold(1f32, |a, x| a.max(x.abs()));
            let d = max_diff(g, w) / scale;
            worst = worst.max(d);
            assert!(
                d <= tol,
                "{name} seq {i} step {t}: max |batched - alone| = {d} (relative)"
            );
        }
    }
    eprintln!("{name}: max |batched - alone| / max |logit| = {worst:e}");
}

#[test]
fn every_fixture_gives_each_sequence_its_own_logits() {
    for name in fixtures() {
        let m = fixture(&name);
        // Lengths around the micro-batch size (6) so that prompts run in several rounds,
        // some sequences joining while others decode.
        let prompts: Vec<Vec<u32>> = [5, 13, 3, 7]
            .iter()
            .enumerate()
            .map(|(i, &n)| prompt(&m, i as u64 + 1, n))
            .collect();
        // All at once, whole prompts (micro-batches of 6).
        check(&m, &name, &prompts, &[0, 0, 0, 0], usize::MAX, 1e-3);
        // Staggered, prompts in chunks of 4 next to the others' decoding.
        check(&m, &name, &prompts, &[0, 2, 3, 5], 4, 1e-3);
    }
}

#[test]
fn all_logits_of_several_sequences_land_in_their_rows() {
    let m = fixture("gemma3");
    let nv = m.config().n_vocab;
    let a = prompt(&m, 7, 11);
    let b = prompt(&m, 8, 4);
    let c = prompt(&m, 9, 9);
    let want_a = m.forward(&mut new_state(&m, 5), &a, 0, true).unwrap();
    let want_b = m.forward(&mut new_state(&m, 5), &b, 0, false).unwrap();
    let want_c = m.forward(&mut new_state(&m, 5), &c, 0, true).unwrap();
    let (mut sa, mut sb, mut sc) = (new_state(&m, 5), new_state(&m, 5), new_state(&m, 5));
    let mut batch = [
        SeqBatch::new(&mut sa, &a, 0, Logits::All),
        SeqBatch::new(&mut sb, &b, 0, Logits::Last),
        SeqBatch::new(&mut sc, &c, 0, Logits::All),
    ];
    let mut logits = Vec::new();
    m.forward_multi(&mut batch, &mut Workspace::new(), &mut logits)
        .unwrap();
    assert_eq!(logits.len(), (11 + 1 + 9) * nv);
    assert!(max_diff(&logits[..11 * nv], &want_a) < 1e-3);
    assert!(max_diff(&logits[11 * nv..12 * nv], &want_b) < 1e-3);
    assert!(max_diff(&logits[12 * nv..], &want_c) < 1e-3);
}

fn smollm2() -> Model {
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/torchless")
        });
    let p = cache.join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    let file = gguf::GgufFile::open(p).expect("open model");
    Model::load(Arc::new(file)).expect("load model")
}

#[test]
fn smollm2_sequences_batched_decode_as_alone() {
    let m = smollm2();
    let prompts: Vec<Vec<u32>> = [9, 17, 4, 12, 6, 20]
        .iter()
        .enumerate()
        .map(|(i, &n)| prompt(&m, 100 + i as u64, n))
        .collect();
    check(&m, "smollm2", &prompts, &[0, 0, 1, 1, 3, 4], 5, 2e-2);
}

//! Times one decode step of `forward_multi` for each count of sequences (default 1 and 16), each
//! with a context of ~100 tokens: the batch gain continuous batching can get from the model.
//! Each step reruns the same position (the cache is truncated back), so the context stays
//! fixed; prints the median and quartiles of many steps.
//!
//!   cargo run --release -p torchless-models --example batch_step -- [model.gguf] [seqs,...] [steps] [threads]

use std::sync::Arc;
use std::time::Instant;

use models::{KvDtype, Logits, Model, SeqBatch, Workspace};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        let home = std::env::var("HOME").expect("HOME");
        format!("{home}/.cache/torchless/models/smollm2-135m-instruct-q4_1.gguf")
    });
    let seqs: Vec<usize> = args.next().map_or(vec![1, 16], |a| {
        a.split(',').map(|n| n.parse().expect("seqs")).collect()
    });
    let steps: usize = args.next().map_or(200, |a| a.parse().expect("steps"));
    if let Some(t) = args.next() {
        // One thread measures the work alone, without the pool's waits at each barrier.
        models::set_threads(t.parse().expect("threads"));
    }
    let file = gguf::GgufFile::open(&path).expect("open model");
    let model = Model::load(Arc::new(file)).expect("load model");
    let nv = model.config().n_vocab as u32;
    let ctx = 100;
    for n in seqs {
        let mut states: Vec<_> = (0..n)
            .map(|i| {
                let mut st = model.new_state(256, KvDtype::F16);
                let prompt: Vec<u32> = (0..ctx as u32)
                    .map(|t| 1 + (t * 7919 + i as u32 * 104_729) % (nv - 1))
                    .collect();
                model.forward(&mut st, &prompt, 0, false).unwrap();
                st
            })
            .collect();
        let mut ws = Workspace::new();
        let mut logits = Vec::new();
        let toks: Vec<[u32; 1]> = (0..n as u32).map(|i| [1 + i * 31]).collect();
        let mut times = Vec::with_capacity(steps);
        for s in 0..steps + 10 {
            let mut batch: Vec<SeqBatch> = states
                .iter_mut()
                .zip(&toks)
                .map(|(st, t)| SeqBatch::new(st, t, ctx, Logits::Last))
                .collect();
            let t0 = Instant::now();
            model
                .forward_multi(&mut batch, &mut ws, &mut logits)
                .unwrap();
            if s >= 10 {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
        println!(
            "{n:>2} seqs: median {:.2} ms per step (min {:.2}, p25 {:.2}, p75 {:.2}), {:.3} ms per sequence",
            q(0.5),
            q(0.0),
            q(0.25),
            q(0.75),
            q(0.5) / n as f64
        );
    }
}

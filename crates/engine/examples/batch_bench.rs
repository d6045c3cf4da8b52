//! Aggregate decode throughput of the batch scheduler with 1, 4 and 16 concurrent greedy
//! requests (one slot each).
//!
//! ```sh
//! cargo run --release -p torchless-engine --example batch_bench -- [MODEL.gguf] [NEW_TOKENS]
//! ```
//! MODEL defaults to SmolLM2-135M-Instruct Q4_1 in `~/.cache/torchless/models`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use engine::{
    Event, GenerateOptions, LoadedModel, Request, SamplingParams, Scheduler, SchedulerOptions,
};

const TOPICS: [&str; 16] = [
    "the history of the printing press",
    "how bees communicate",
    "the water cycle",
    "why the sky is blue",
    "the rules of chess",
    "how a bicycle stays upright",
    "the life of a star",
    "what a compiler does",
    "the causes of the tides",
    "how bread rises",
    "the origin of the moon",
    "how vaccines work",
    "the invention of the telephone",
    "why leaves change colour",
    "how airplanes fly",
    "the structure of DNA",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/torchless/models/smollm2-135m-instruct-q4_1.gguf")
    });
    let new_tokens: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let lm = Arc::new(LoadedModel::load(&path)?);
    println!(
        "{} ({} threads), {new_tokens} new tokens per request, greedy",
        path.display(),
        engine::default_threads()
    );
    println!(
        "concurrent | generated | wall s | aggregate tok/s | per-request tok/s | mean TTFT ms"
    );
    for n in [1, 4, 16] {
        let opts = SchedulerOptions {
            n_parallel: n,
            max_seq_len: Some(512),
            ..Default::default()
        };
        let sched = Scheduler::start(lm.clone(), opts)?;
        let t0 = Instant::now();
        let handles = (0..n)
            .map(|i| {
                let text = format!("Here is a long explanation of {}:", TOPICS[i]);
                let req = Request {
                    prompt: lm.tokenize(&text, true, false)?,
                    options: GenerateOptions {
                        max_tokens: Some(new_tokens),
                        sampling: SamplingParams::greedy(),
                        ..Default::default()
                    },
                };
                sched.submit(req)
            })
            .collect::<Result<Vec<_>, engine::EngineError>>()?;
        let (mut generated, mut per_req, mut ttft) = (0, 0.0, 0.0);
        for h in handles {
            for ev in h {
                match ev {
                    Event::Token(_) => {}
                    Event::Done(f) => {
                        generated += f.usage.completion_tokens;
                        let g = f.timings.generation.as_secs_f64();
                        if f.usage.completion_tokens > 1 && g > 0.0 {
                            per_req += (f.usage.completion_tokens - 1) as f64 / g / n as f64;
                        }
                        ttft +=
                            (f.timings.queued + f.timings.prompt).as_secs_f64() * 1e3 / n as f64;
                    }
                    Event::Error(e) => return Err(e.into()),
                }
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        println!(
            "{n:>10} | {generated:>9} | {wall:>6.2} | {:>15.1} | {per_req:>17.1} | {ttft:>12.1}",
            generated as f64 / wall
        );
    }
    model_steps(&lm)?;
    Ok(())
}

/// The model alone: one `forward_multi` decode step for B sequences (each with a 32-token
/// cache), against one B-token prompt chunk of a single sequence (the same rows through
/// the weights; what differs is attention and the output rows).
fn model_steps(lm: &LoadedModel) -> Result<(), Box<dyn std::error::Error>> {
    use models::{KvDtype, Logits, SeqBatch, Workspace};
    let m = lm.model();
    let reps = 20;
    println!("model only, ms per step ({reps} steps): B | decode B seqs | B-token chunk of 1 seq");
    for b in [1usize, 4, 16] {
        let mut states: Vec<_> = (0..b).map(|_| m.new_state(128, KvDtype::F16)).collect();
        let prompt: Vec<u32> = (1..=32).collect();
        let mut ws = Workspace::new();
        let mut logits = Vec::new();
        for st in states.iter_mut() {
            m.forward_into(st, &prompt, 0, false, &mut logits)?;
        }
        let tok = [42u32];
        let t0 = Instant::now();
        for _ in 0..reps {
            let mut batch: Vec<_> = states
                .iter_mut()
                .map(|st| SeqBatch::new(st, &tok, 32, Logits::Last))
                .collect();
            m.forward_multi(&mut batch, &mut ws, &mut logits)?;
        }
        let multi = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let chunk: Vec<u32> = (100..100 + b as u32).collect();
        let t0 = Instant::now();
        for _ in 0..reps {
            m.forward_into(&mut states[0], &chunk, 32, false, &mut logits)?;
        }
        let one = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!("{b:>2} | {multi:>6.1} | {one:>6.1}");
    }
    Ok(())
}

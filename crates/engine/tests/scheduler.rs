//! The batch scheduler: many concurrent greedy requests each get exactly the tokens (and
//! text, and stop reason) a session gives the same request alone, nothing mixed or lost,
//! every slot free afterwards; a prompt sharing a prefix with a slot's cache reuses it and
//! says so; a dropped receiver frees its slot; a full queue refuses with `QueueFull`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{
    EngineError, Event, GenerateOptions, KvDtype, LoadedModel, Request, SamplingParams, Scheduler,
    SchedulerOptions, SessionOptions, StopReason, Usage,
};

fn fixture(name: &str) -> Arc<LoadedModel> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/data")
        .join(format!("{name}.gguf"));
    Arc::new(LoadedModel::load(p).unwrap())
}

fn smollm2() -> Arc<LoadedModel> {
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
    Arc::new(LoadedModel::load(p).unwrap())
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(n),
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

/// `n` deterministic ids spread over the vocabulary, varied by `salt`.
fn ids(lm: &LoadedModel, n: usize, salt: u64) -> Vec<u32> {
    let v = lm.n_vocab() as u64;
    (0..n as u64)
        .map(|i| ((i * 7919 + 13 + salt * 104729) % (v - 1) + 1) as u32)
        .collect()
}

#[derive(Debug, PartialEq)]
struct Answer {
    ids: Vec<u32>,
    text: String,
    stop: StopReason,
}

/// The request run by a fresh session.
fn alone(lm: &LoadedModel, max_seq_len: usize, prompt: &[u32], opts: &GenerateOptions) -> Answer {
    let so = SessionOptions {
        max_seq_len: Some(max_seq_len),
        kv_dtype: KvDtype::F16,
    };
    let mut s = lm.new_session(&so).unwrap();
    let (mut ids, mut text) = (Vec::new(), String::new());
    let st = s
        .generate_with(prompt, opts, |e| {
            ids.push(e.id);
            text.push_str(&e.text);
        })
        .unwrap();
    Answer {
        ids,
        text,
        stop: st.stop,
    }
}

/// Every event of a request until its end; panics on an error.
fn collect(h: engine::RequestHandle) -> (Answer, Usage) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for ev in h {
        match ev {
            Event::Token(t) => {
                ids.push(t.id);
                text.push_str(&t.text);
            }
            Event::Done(f) => {
                assert_eq!(f.usage.completion_tokens, ids.len());
                return (
                    Answer {
                        ids,
                        text,
                        stop: f.stop,
                    },
                    f.usage,
                );
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("the request ended without Done");
}

fn wait_idle(s: &Scheduler) {
    let t0 = Instant::now();
    while s.stats().active != 0 || s.stats().queued != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "slots stay busy: {:?}",
            s.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `n` requests with different prompts (lengths 1..~60, so prompts are fed in several chunks
/// of the step budget while others decode), all submitted at once.
fn concurrent_equals_alone(lm: Arc<LoadedModel>, n: usize, opts: SchedulerOptions, max_new: usize) {
    let max_seq_len = opts.max_seq_len.unwrap();
    let prompts: Vec<Vec<u32>> = (0..n)
        .map(|i| ids(&lm, 1 + (i * 13) % 60, i as u64))
        .collect();
    let sched = Scheduler::start(lm.clone(), opts).unwrap();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let req = Request {
                prompt: p.clone(),
                options: greedy(max_new),
            };
            sched.submit(req).unwrap()
        })
        .collect();
    let got: Vec<(Answer, Usage)> = handles.into_iter().map(collect).collect();
    wait_idle(&sched);
    let total: usize = got.iter().map(|(a, _)| a.ids.len()).sum();
    eprintln!("{n} requests, {total} tokens generated");
    assert!(
        total > n,
        "every request stopped at once: nothing was tested"
    );
    for (i, (p, (answer, usage))) in prompts.iter().zip(got).enumerate() {
        let want = alone(&lm, max_seq_len, p, &greedy(max_new));
        assert_eq!(answer, want, "request {i}");
        assert_eq!(usage.prompt_tokens, p.len());
    }
}

#[test]
fn concurrent_requests_on_fixtures_get_their_alone_tokens() {
    // Dense, MoE, and the sliding-window ring (window 8) with more slots than requests in
    // flight at once and a step budget that splits prompts.
    for name in ["llama", "qwen2moe", "gemma3", "deepseek2"] {
        let lm = fixture(name);
        let opts = SchedulerOptions {
            n_parallel: 8,
            max_seq_len: Some(128),
            kv_dtype: KvDtype::F16,
            max_queue: 64,
            step_tokens: 24,
        };
        concurrent_equals_alone(lm, 24, opts, 12);
    }
}

#[test]
fn smollm2_sixteen_concurrent_requests_get_their_alone_tokens() {
    let opts = SchedulerOptions {
        n_parallel: 16,
        max_seq_len: Some(256),
        kv_dtype: KvDtype::F16,
        max_queue: 64,
        step_tokens: 64,
    };
    concurrent_equals_alone(smollm2(), 16, opts, 16);
}

#[test]
fn a_shared_prefix_is_reused_and_reported() {
    let lm = fixture("llama");
    let opts = SchedulerOptions {
        n_parallel: 2,
        max_seq_len: Some(128),
        kv_dtype: KvDtype::F16,
        max_queue: 8,
        step_tokens: 64,
    };
    let sched = Scheduler::start(lm.clone(), opts).unwrap();
    let first = ids(&lm, 30, 1);
    let submit = |p: &[u32]| {
        let req = Request {
            prompt: p.to_vec(),
            options: greedy(5),
        };
        collect(sched.submit(req).unwrap())
    };
    let (a, usage) = submit(&first);
    assert_eq!(usage.cached_prompt_tokens, 0);
    // The first turn plus its answer plus a new message: everything cached is reused (the
    // last answer token was never fed, so it is computed now).
    let mut second = first.clone();
    second.extend(&a.ids);
    second.extend(ids(&lm, 7, 2));
    let (b, usage) = submit(&second);
    assert_eq!(usage.cached_prompt_tokens, first.len() + a.ids.len() - 1);
    assert_eq!(usage.prompt_tokens, second.len());
    assert_eq!(b, alone(&lm, 128, &second, &greedy(5)));
    // Sharing only the first 20 tokens: those are kept, the rest recomputed.
    let mut third = first[..20].to_vec();
    third.extend(ids(&lm, 9, 3));
    let (c, usage) = submit(&third);
    assert_eq!(usage.cached_prompt_tokens, 20);
    assert_eq!(c, alone(&lm, 128, &third, &greedy(5)));
    // The same prompt again: all but its last token come from the cache.
    let (d, usage) = submit(&third);
    assert_eq!(usage.cached_prompt_tokens, third.len() - 1);
    assert_eq!(d, c);
    wait_idle(&sched);
}

#[test]
fn concurrent_requests_with_one_system_prompt_compute_it_once() {
    // Eight prompts submitted together, each a shared 40-token "system prompt" and its own
    // tail: the first computes the shared part (over two steps of 24 tokens), the others
    // wait for it, copy its keys and values and report them as cached, and every answer is
    // still the one the request gets alone. Dense, MoE, sliding-window and latent caches.
    for name in ["llama", "qwen2moe", "gemma3", "deepseek2"] {
        let lm = fixture(name);
        let opts = SchedulerOptions {
            n_parallel: 8,
            max_seq_len: Some(128),
            kv_dtype: KvDtype::F16,
            max_queue: 16,
            step_tokens: 24,
        };
        let system = ids(&lm, 40, 99);
        let prompts: Vec<Vec<u32>> = (0..8)
            .map(|i| [system.clone(), ids(&lm, 1 + 3 * i, i as u64)].concat())
            .collect();
        let sched = Scheduler::start(lm.clone(), opts).unwrap();
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let req = Request {
                    prompt: p.clone(),
                    options: greedy(6),
                };
                sched.submit(req).unwrap()
            })
            .collect();
        let got: Vec<(Answer, Usage)> = handles.into_iter().map(collect).collect();
        wait_idle(&sched);
        for (i, (p, (answer, usage))) in prompts.iter().zip(got).enumerate() {
            assert_eq!(answer, alone(&lm, 128, p, &greedy(6)), "{name} request {i}");
            let want = if i == 0 { 0 } else { system.len() };
            assert_eq!(usage.cached_prompt_tokens, want, "{name} request {i}");
        }
    }
}

/// A request that decodes for a long time (until the 4096-position context is full).
fn endless(lm: &LoadedModel) -> Request {
    Request {
        prompt: lm.tokenize("1, 2, 3, 4, 5, 6, 7,", true, false).unwrap(),
        options: GenerateOptions {
            max_tokens: None,
            sampling: SamplingParams::greedy(),
            ..Default::default()
        },
    }
}

fn first_token(h: &engine::RequestHandle) {
    match h.recv() {
        Some(Event::Token(_)) => {}
        other => panic!("expected a token, got {other:?}"),
    }
}

#[test]
fn dropping_the_receiver_frees_the_slot() {
    let lm = smollm2();
    let opts = SchedulerOptions {
        n_parallel: 1,
        max_seq_len: Some(4096),
        ..Default::default()
    };
    let sched = Scheduler::start(lm.clone(), opts).unwrap();
    let h = sched.submit(endless(&lm)).unwrap();
    first_token(&h);
    assert_eq!(sched.stats().active, 1);
    // Queued behind it, then cancelled before it gets the slot.
    let queued = sched.submit(endless(&lm)).unwrap();
    drop(queued);
    drop(h);
    wait_idle(&sched);
    // The slot serves the next request.
    let req = Request {
        prompt: lm.tokenize("Hello", true, false).unwrap(),
        options: greedy(4),
    };
    let (a, _) = collect(sched.submit(req).unwrap());
    assert_eq!(a.ids.len(), 4);
    wait_idle(&sched);
}

#[test]
fn a_full_queue_refuses_with_queue_full() {
    let lm = smollm2();
    let opts = SchedulerOptions {
        n_parallel: 1,
        max_seq_len: Some(4096),
        max_queue: 2,
        ..Default::default()
    };
    let sched = Scheduler::start(lm.clone(), opts).unwrap();
    let busy = sched.submit(endless(&lm)).unwrap();
    first_token(&busy);
    let q1 = sched.submit(endless(&lm)).unwrap();
    let q2 = sched.submit(endless(&lm)).unwrap();
    assert_eq!(sched.stats().queued, 2);
    match sched.submit(endless(&lm)) {
        Err(e @ EngineError::QueueFull { limit: 2 }) => {
            assert!(e.to_string().contains("queue full"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a third request was queued"),
    }
    drop((busy, q1, q2));
    wait_idle(&sched);
    // Invalid requests are refused at once, not queued.
    let too_long = Request {
        prompt: vec![1; 4097],
        options: greedy(1),
    };
    assert!(matches!(
        sched.submit(too_long),
        Err(EngineError::PromptTooLong { .. })
    ));
}

/// The scheduler on the GPU (`--backend` for `serve`): slots keep their KV caches in device
/// memory and each step is one GPU forward pass over all of them. One request at a time,
/// each gets a GPU session's tokens exactly (the same rows through the same kernels);
/// together, every request completes, with a GPU session's tokens up to the last-bit
/// differences of batching (other kernels for more rows, which can flip a near-tie on
/// these random-weight fixtures: at least the first half must agree here).
#[cfg(feature = "gpu")]
#[test]
fn gpu_slots_serve_requests() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/llama.gguf");
    let opts = engine::LoadOptions {
        backend: engine::device::Backend::Gpu(engine::device::GpuApi::Any),
        ..Default::default()
    };
    let lm = Arc::new(
        LoadedModel::load_with(p, &opts, |_, _| {}).unwrap_or_else(|e| {
            panic!("needs a GPU adapter: {e} (in CI: apt-get install mesa-vulkan-drivers)")
        }),
    );
    assert!(lm.on_gpu());
    let sopts = SchedulerOptions {
        n_parallel: 3,
        max_seq_len: Some(96),
        kv_dtype: KvDtype::F16,
        max_queue: 16,
        step_tokens: 64,
    };
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| ids(&lm, 3 + 7 * i, i as u64)).collect();
    let sched = Scheduler::start(lm.clone(), sopts).unwrap();
    let submit = |p: &[u32]| {
        let req = Request {
            prompt: p.to_vec(),
            options: greedy(10),
        };
        sched.submit(req).unwrap()
    };
    for p in &prompts[..3] {
        let (answer, _) = collect(submit(p));
        assert_eq!(answer, alone(&lm, 96, p, &greedy(10)));
    }
    wait_idle(&sched);
    let handles: Vec<_> = prompts.iter().map(|p| submit(p)).collect();
    for (i, (h, p)) in handles.into_iter().zip(&prompts).enumerate() {
        let (answer, usage) = collect(h);
        assert_eq!(usage.prompt_tokens, p.len());
        let want = alone(&lm, 96, p, &greedy(10));
        let same = answer
            .ids
            .iter()
            .zip(&want.ids)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!("request {i}: {same} of {} tokens as alone", want.ids.len());
        assert!(
            same * 2 >= want.ids.len(),
            "request {i}: {answer:?} vs {want:?}"
        );
    }
    wait_idle(&sched);
}

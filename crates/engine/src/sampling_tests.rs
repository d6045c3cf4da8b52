use super::*;

fn ln_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|x| x.ln() as f32).collect()
}

fn ids(cand: &[(u32, f32)]) -> Vec<u32> {
    cand.iter().map(|c| c.0).collect()
}

fn indexed(logits: &[f32]) -> Vec<(u32, f32)> {
    logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l))
        .collect()
}

#[test]
fn greedy_takes_argmax_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
    assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0], &[]).unwrap(), 1);
    assert_eq!(s.sample(&[-5.0, -4.0, -4.5], &[]).unwrap(), 1);
    assert_eq!(s.sample(&[f32::NAN, 0.5, 0.1], &[]).unwrap(), 1);
}

#[test]
fn top_k_keeps_k_best_sorted() {
    let mut c = indexed(&[0.1, 2.0, -1.0, 2.0, 1.5]);
    top_k(&mut c, 3);
    assert_eq!(ids(&c), vec![1, 3, 4]);
    let mut all = indexed(&[0.1, 2.0, -1.0]);
    top_k(&mut all, 0);
    assert_eq!(ids(&all), vec![1, 0, 2]);
}

#[test]
fn top_p_keeps_smallest_prefix_reaching_mass() {
    let logits = ln_probs(&[0.15, 0.5, 0.05, 0.3]);
    let mut c = indexed(&logits);
    top_k(&mut c, 0);
    top_p(&mut c, 0.75);
    assert_eq!(ids(&c), vec![1, 3]);

    let mut c = indexed(&logits);
    top_k(&mut c, 0);
    top_p(&mut c, 0.9);
    assert_eq!(ids(&c), vec![1, 3, 0]);

    let mut c = indexed(&logits);
    top_k(&mut c, 0);
    top_p(&mut c, 0.4);
    assert_eq!(ids(&c), vec![1]);
}

#[test]
fn min_p_drops_tokens_below_fraction_of_best() {
    let logits = ln_probs(&[0.15, 0.5, 0.05, 0.3]);
    let mut c = indexed(&logits);
    top_k(&mut c, 0);
    // threshold 0.2 * 0.5 = 0.1: 0.05 goes.
    min_p(&mut c, 0.2);
    assert_eq!(ids(&c), vec![1, 3, 0]);
    let mut c = indexed(&logits);
    top_k(&mut c, 0);
    // threshold 0.35: only 0.5 survives.
    min_p(&mut c, 0.7);
    assert_eq!(ids(&c), vec![1]);
}

#[test]
fn repeat_penalty_divides_positive_multiplies_negative() {
    let p = SamplingParams {
        repeat_penalty: 2.0,
        ..Default::default()
    };
    let mut c = indexed(&[2.0, -1.0, 0.5]);
    apply_penalties(&mut c, &[0, 1, 1], &p);
    assert_eq!(c, vec![(0, 1.0), (1, -2.0), (2, 0.5)]);
}

#[test]
fn presence_and_frequency_penalties_use_counts() {
    let p = SamplingParams {
        repeat_penalty: 2.0,
        frequency_penalty: 0.5,
        presence_penalty: 0.25,
        ..Default::default()
    };
    let mut c = indexed(&[2.0, -1.0, 0.5]);
    apply_penalties(&mut c, &[0, 1, 1], &p);
    assert_eq!(c, vec![(0, 0.25), (1, -3.25), (2, 0.5)]);
}

#[test]
fn penalties_only_see_last_n_tokens() {
    let p = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 1,
        ..Default::default()
    };
    let mut c = indexed(&[2.0, 2.0, 2.0]);
    apply_penalties(&mut c, &[0, 2], &p);
    assert_eq!(c, vec![(0, 2.0), (1, 2.0), (2, 1.0)]);
    let off = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 0,
        ..Default::default()
    };
    let mut c = indexed(&[2.0, 2.0]);
    apply_penalties(&mut c, &[0, 1], &off);
    assert_eq!(c, vec![(0, 2.0), (1, 2.0)]);
}

#[test]
fn penalty_can_change_greedy_choice() {
    let p = SamplingParams {
        temperature: 0.0,
        repeat_penalty: 1.5,
        ..Default::default()
    };
    let mut s = Sampler::new(p).unwrap();
    assert_eq!(s.sample(&[3.0, 2.5], &[]).unwrap(), 0);
    assert_eq!(s.sample(&[3.0, 2.5], &[0]).unwrap(), 1);
}

fn free(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_tokens_other_seed_differs() {
    let logits = ln_probs(&[0.2, 0.2, 0.2, 0.2, 0.2]);
    let run = |seed| {
        let mut s = Sampler::new(free(seed)).unwrap();
        (0..64)
            .map(|_| s.sample(&logits, &[]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn draws_follow_the_distribution() {
    let logits = ln_probs(&[0.7, 0.3]);
    let mut s = Sampler::new(free(7)).unwrap();
    let n = 20_000;
    let zeros = (0..n)
        .filter(|_| s.sample(&logits, &[]).unwrap() == 0)
        .count();
    let f = zeros as f64 / n as f64;
    assert!((f - 0.7).abs() < 0.015, "frequency of token 0: {f}");
}

#[test]
fn truncation_limits_what_can_be_drawn() {
    let logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
    let mut s = Sampler::new(SamplingParams {
        top_k: 2,
        ..free(3)
    })
    .unwrap();
    for _ in 0..500 {
        assert!(s.sample(&logits, &[]).unwrap() < 2);
    }
    let mut s = Sampler::new(SamplingParams {
        min_p: 0.6,
        ..free(3)
    })
    .unwrap();
    for _ in 0..500 {
        assert!(s.sample(&logits, &[]).unwrap() < 2);
    }
}

#[test]
fn low_temperature_concentrates_mass() {
    let logits = ln_probs(&[0.6, 0.4]);
    let mut s = Sampler::new(SamplingParams {
        temperature: 0.05,
        ..free(11)
    })
    .unwrap();
    // p(1) = 0.4^20 / (0.6^20 + 0.4^20) ~ 3e-4.
    let ones = (0..2000)
        .filter(|_| s.sample(&logits, &[]).unwrap() == 1)
        .count();
    assert!(ones < 10, "{ones}");
}

#[test]
fn invalid_values_are_rejected_with_names() {
    let check = |p: SamplingParams, needle: &str| {
        let e = Sampler::new(p).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    };
    check(
        SamplingParams {
            top_p: 1.5,
            ..Default::default()
        },
        "top-p",
    );
    check(
        SamplingParams {
            top_p: 0.0,
            ..Default::default()
        },
        "top-p",
    );
    check(
        SamplingParams {
            temperature: -0.1,
            ..Default::default()
        },
        "temperature",
    );
    check(
        SamplingParams {
            min_p: 2.0,
            ..Default::default()
        },
        "min-p",
    );
    check(
        SamplingParams {
            repeat_penalty: 0.0,
            ..Default::default()
        },
        "repeat-penalty",
    );
    check(
        SamplingParams {
            frequency_penalty: f32::NAN,
            ..Default::default()
        },
        "frequency-penalty",
    );
}

#[test]
fn logprobs_are_log_softmax_over_vocab() {
    let logits = [0.0f32, (3.0f64).ln() as f32, f32::NEG_INFINITY];
    let (lp, top) = logprobs(&logits, 0, 5);
    assert!((lp - 0.25f64.ln()).abs() < 1e-6);
    assert_eq!(top.len(), 3);
    assert_eq!(top[0].id, 1);
    assert!((top[0].logprob - 0.75f64.ln()).abs() < 1e-6);
    assert_eq!(top[2].logprob, f64::NEG_INFINITY);
    let (_, top1) = logprobs(&[1.0, 2.0, 2.0], 1, 1);
    assert_eq!(top1.len(), 1);
    assert_eq!(top1[0].id, 1);
}

#[test]
fn rng_is_fixed_algorithm() {
    // SplitMix64 reference values for seed 0 (from the published algorithm).
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
}

#[test]
fn tokens_masked_to_minus_infinity_are_never_drawn() {
    // A constraint leaves two tokens; top-k 40 would otherwise keep 38 forbidden ones.
    let mut logits = vec![f32::NEG_INFINITY; 50];
    logits[7] = 0.0;
    logits[9] = 0.5;
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    };
    let mut s = Sampler::new(params).unwrap();
    let mut seen = [0usize; 2];
    for _ in 0..500 {
        match s.sample(&logits, &[]).unwrap() {
            7 => seen[0] += 1,
            9 => seen[1] += 1,
            other => panic!("drew forbidden token {other}"),
        }
    }
    assert!(seen[0] > 0 && seen[1] > seen[0], "{seen:?}");
    let mut g = Sampler::new(SamplingParams::greedy()).unwrap();
    assert_eq!(g.sample(&logits, &[]).unwrap(), 9);
    assert!(g.sample(&[f32::NEG_INFINITY; 4], &[]).is_err());
}

#[test]
fn greedy_without_penalties_equals_the_candidate_argmax() {
    // The greedy shortcut (no candidate list) against the general chain's argmax, on logits
    // with ties, NaN and forbidden tokens.
    let mut rng = Rng::new(5);
    let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
    for n in [1, 2, 7, 300] {
        for _ in 0..50 {
            let logits: Vec<f32> = (0..n)
                .map(|_| match rng.next_u64() % 10 {
                    0 => f32::NEG_INFINITY,
                    1 => f32::NAN,
                    k => (k % 4) as f32,
                })
                .collect();
            let mut cand = indexed(&logits);
            cand.retain(|c| c.1 != f32::NEG_INFINITY);
            let got = s.sample(&logits, &[1, 2, 3]);
            if cand.is_empty() {
                assert!(got.is_err());
            } else {
                assert_eq!(got.unwrap(), argmax(&cand), "{logits:?}");
            }
        }
    }
}

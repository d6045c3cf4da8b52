//! Mixture-of-experts routing as llama.cpp's `build_moe_ffn` computes it: router logits to
//! the chosen experts of one token and their weights. Shared by `models`' CPU forward pass
//! and the backends' `route` operation ([`crate::backend::Backend::route`]).

/// How router logits become expert probabilities (`expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// 1: softmax over all experts.
    Softmax,
    /// 2: sigmoid of each logit.
    Sigmoid,
    /// 3: softmax over the selected experts' logits only.
    SoftmaxWeight,
}

/// What a MoE layer's router does with its logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Router {
    pub n_expert: usize,
    /// Experts chosen per token.
    pub n_used: usize,
    pub gating: Gating,
    /// Divide the chosen weights by their sum.
    pub norm_weights: bool,
    /// Multiply the chosen weights by this (0 or 1 = none).
    pub weights_scale: f32,
    /// Group-limited routing: experts in `n_group` groups, only the best `n_group_used`
    /// groups (by the sum of their top-2 biased scores) are eligible. 0 or 1 = no groups.
    pub n_group: usize,
    pub n_group_used: usize,
}

/// Most expert groups a router may have.
pub const MAX_GROUPS: usize = 64;

impl Router {
    /// Checks the counts (experts used, groups) before a router runs.
    pub fn check(&self) -> Result<(), crate::ComputeError> {
        let (ne, k) = (self.n_expert, self.n_used);
        let bad = k == 0
            || k > ne
            || (self.n_group > 1
                && (self.n_group > MAX_GROUPS
                    || !ne.is_multiple_of(self.n_group)
                    || self.n_group_used == 0
                    || self.n_group_used > self.n_group
                    || k > self.n_group_used * (ne / self.n_group)));
        if bad {
            return Err(crate::shape_err(
                "router",
                "a choosable number of experts",
                format!(
                    "{k} of {ne} in {} groups, {} used",
                    self.n_group, self.n_group_used
                ),
            ));
        }
        Ok(())
    }
}

/// Chooses `chosen.len()` experts for one token from its router `logits` and writes their
/// weights: probabilities by the gating function; selection on probabilities + bias,
/// restricted to the best groups; weights from the unbiased probabilities (softmax over the
/// chosen logits for `SoftmaxWeight`), renormalised and scaled when the router says so.
/// Top-k is highest first, ties to the lower expert id.
pub fn route(
    r: &Router,
    logits: &[f32],
    bias: Option<&[f32]>,
    probs: &mut Vec<f32>,
    select: &mut Vec<f32>,
    chosen: &mut [u32],
    weights: &mut [f32],
) {
    let ne = logits.len();
    probs.clear();
    probs.extend_from_slice(logits);
    match r.gating {
        Gating::Softmax => crate::softmax(probs),
        Gating::Sigmoid => {
            for p in probs.iter_mut() {
                *p = 1.0 / (1.0 + (-*p).exp());
            }
        }
        Gating::SoftmaxWeight => {}
    }
    select.clear();
    select.extend_from_slice(probs);
    if let Some(b) = bias {
        for (s, &x) in select.iter_mut().zip(b) {
            *s += x;
        }
    }
    if r.n_group > 1 {
        let per = ne / r.n_group;
        // Group score: the sum of its two best selection scores.
        let mut scores = [(0f32, 0usize); MAX_GROUPS];
        let ng = r.n_group.min(MAX_GROUPS);
        for (g, sc) in scores.iter_mut().enumerate().take(ng) {
            let grp = &select[g * per..(g + 1) * per];
            let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for &v in grp {
                if v > a {
                    b = a;
                    a = v;
                } else if v > b {
                    b = v;
                }
            }
            *sc = (if per > 1 { a + b } else { a }, g);
        }
        let groups = &mut scores[..ng];
        groups.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let mut keep = [false; MAX_GROUPS];
        for &(_, g) in groups.iter().take(r.n_group_used) {
            keep[g] = true;
        }
        for (g, &kept) in keep.iter().enumerate().take(ng) {
            if !kept {
                select[g * per..(g + 1) * per].fill(f32::NEG_INFINITY);
            }
        }
    }
    for k in 0..chosen.len() {
        let mut best = usize::MAX;
        for i in 0..ne {
            if chosen[..k].contains(&(i as u32)) {
                continue;
            }
            if best == usize::MAX || select[i] > select[best] {
                best = i;
            }
        }
        chosen[k] = best as u32;
    }
    for (w, &c) in weights.iter_mut().zip(chosen.iter()) {
        *w = probs[c as usize];
    }
    if r.gating == Gating::SoftmaxWeight {
        crate::softmax(weights);
    }
    if r.norm_weights {
        // ggml_sum_rows accumulates in f64; the clamp keeps the division finite.
        let sum = weights.iter().map(|&w| w as f64).sum::<f64>() as f32;
        let sum = sum.max(6.103_515_6e-5);
        for w in weights.iter_mut() {
            *w /= sum;
        }
    }
    if r.weights_scale != 0.0 && r.weights_scale != 1.0 {
        for w in weights.iter_mut() {
            *w *= r.weights_scale;
        }
    }
}

//! Mixture-of-experts feed-forward as llama.cpp's `build_moe_ffn` computes it: a router
//! (softmax, sigmoid or softmax over the selected experts; selection bias; group-limited
//! top-k; optional renormalisation and scale) choosing `n_used` of `n_expert` SwiGLU experts
//! stored stacked in `ffn_{gate,up,down}_exps`, plus optional shared experts.

pub(crate) use compute::moe::Gating;

/// The shared expert(s) added to the routed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    None,
    /// DeepSeek: `ffn_{gate,up,down}_shexp`, added as is.
    Plain,
    /// Qwen2-MoE: the shared expert's output times `sigmoid(ffn_gate_inp_shexp · x)`.
    Gated,
}

/// What a family chooses for a MoE layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MoeSpec {
    pub n_expert: usize,
    pub n_used: usize,
    /// Hidden units of one expert.
    pub n_ff_exp: usize,
    pub gating: Gating,
    /// Divide the chosen weights by their sum.
    pub norm_weights: bool,
    /// Multiply the chosen weights by this (0 or 1 = none).
    pub weights_scale: f32,
    /// Group-limited routing: experts in `n_group` groups, only the best `n_group_used`
    /// groups (by the sum of their top-2 biased scores) are eligible. 0 = no groups.
    pub n_group: usize,
    pub n_group_used: usize,
    pub shared: Shared,
    /// Hidden units of the shared expert(s).
    pub n_ff_shared: usize,
}

use gguf::{GgufFile, TensorInfo};

use super::attention::sized;
use super::ffn::{Ffn, FfnBufs, Glu};
use crate::error::ModelError;
use crate::weights::{Loader, Matrix};
use crate::Config;

/// A stacked expert tensor (`ffn_*_exps`, ggml dims `[cols, rows, n_expert]`): expert `e`
/// is the matrix of rows `e * rows .. (e + 1) * rows`, viewed in place.
#[derive(Clone, Debug)]
pub(crate) struct Experts {
    pub info: TensorInfo,
    pub rows: usize,
    pub cols: usize,
    /// Bytes of one expert's matrix.
    pub expert_bytes: usize,
}

impl Experts {
    fn load(
        ld: &Loader,
        name: &str,
        n_expert: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self, ModelError> {
        let info = ld.tensor(name, &[cols, rows, n_expert])?.clone();
        let row_bytes = info
            .ty
            .row_bytes(cols as u64)
            .ok_or_else(|| ModelError::Shape {
                name: name.to_string(),
                expected: vec![cols as u64, rows as u64, n_expert as u64],
                found: info.dims.clone(),
            })? as usize;
        Ok(Experts {
            info,
            rows,
            cols,
            expert_bytes: row_bytes * rows,
        })
    }

    /// Expert `e`, paged in on demand under lazy loading: the kernels hand its bytes back
    /// once done, widened to the folios around it, which belong partly to unchosen
    /// neighbours that would otherwise stay resident.
    fn view<'a>(
        &self,
        file: &'a GgufFile,
        e: usize,
    ) -> Result<compute::WeightView<'a>, ModelError> {
        let data = file.tensor_data(&self.info);
        let bytes = &data[e * self.expert_bytes..(e + 1) * self.expert_bytes];
        let view = compute::WeightView::new(self.info.ty, self.rows, self.cols, bytes)?;
        Ok(view.paged_by(file.residency()))
    }
}

/// A mixture-of-experts FFN layer.
pub(crate) struct Moe {
    pub spec: MoeSpec,
    /// Router: `n_expert` rows.
    pub gate_inp: Matrix,
    /// Selection bias (`exp_probs_b`): chooses experts, does not weight them.
    pub probs_bias: Option<Vec<f32>>,
    pub gate: Experts,
    pub up: Experts,
    pub down: Experts,
    /// Shared experts: a dense SwiGLU FFN over every token.
    pub shared: Option<Ffn>,
    /// Qwen2-MoE's gate of the shared expert: one row.
    pub shared_gate: Option<Matrix>,
}

/// Working buffers of a MoE layer, reused across calls.
#[derive(Default)]
pub(crate) struct MoeScratch {
    logits: Vec<f32>,
    probs: Vec<f32>,
    select: Vec<f32>,
    /// Per token: the chosen experts (rank order) and their weights.
    chosen: Vec<u32>,
    weights: Vec<f32>,
    /// Tokens grouped by expert: (token, rank) pairs, `starts[e]..starts[e + 1]`.
    order: Vec<(u32, u32)>,
    starts: Vec<usize>,
    xs: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    ys: Vec<f32>,
    /// Every chosen expert's weighted output, `[token][rank][n_embd]`.
    outs: Vec<f32>,
    shared: Vec<f32>,
    shared_gate: Vec<f32>,
    ranks: Vec<u32>,
}

impl Moe {
    pub fn load(ld: &Loader, cfg: &Config, il: usize, spec: MoeSpec) -> Result<Self, ModelError> {
        let p = |s: &str| format!("blk.{il}.{s}");
        let (e, ne, ff) = (cfg.n_embd, spec.n_expert, spec.n_ff_exp);
        if spec.n_used == 0 || spec.n_used > ne {
            return Err(ModelError::Input(format!(
                "layer {il}: {} experts used of {ne}",
                spec.n_used
            )));
        }
        if spec.n_group > 1
            && (!ne.is_multiple_of(spec.n_group)
                || spec.n_group_used == 0
                || spec.n_group_used > spec.n_group
                || spec.n_used > spec.n_group_used * (ne / spec.n_group))
        {
            return Err(ModelError::Input(format!(
                "layer {il}: {ne} experts in {} groups, {} used, cannot choose {}",
                spec.n_group, spec.n_group_used, spec.n_used
            )));
        }
        let (shared, shared_gate) = match spec.shared {
            Shared::None => (None, None),
            Shared::Plain | Shared::Gated => {
                let names = ["ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"];
                let ffn = Ffn::load_gated(ld, cfg, il, names, spec.n_ff_shared, Glu::SwiGlu)?;
                let gate = if spec.shared == Shared::Gated {
                    Some(ld.matrix(&p("ffn_gate_inp_shexp.weight"), 1, e)?)
                } else {
                    None
                };
                (Some(ffn), gate)
            }
        };
        Ok(Moe {
            gate_inp: ld.matrix(&p("ffn_gate_inp.weight"), ne, e)?,
            probs_bias: ld.opt_vector(&p("exp_probs_b.bias"), ne)?,
            gate: Experts::load(ld, &p("ffn_gate_exps.weight"), ne, ff, e)?,
            up: Experts::load(ld, &p("ffn_up_exps.weight"), ne, ff, e)?,
            down: Experts::load(ld, &p("ffn_down_exps.weight"), ne, e, ff)?,
            shared,
            shared_gate,
            spec,
        })
    }

    /// `out = moe(h)` for `n` rows.
    pub fn forward(
        &self,
        file: &GgufFile,
        h: &[f32],
        n: usize,
        out: &mut [f32],
        b: FfnBufs,
    ) -> Result<(), ModelError> {
        let sp = &self.spec;
        let (ne, k, e) = (sp.n_expert, sp.n_used, self.gate_inp.cols);
        let s = &mut *b.moe;
        // Route every token.
        let logits = sized(&mut s.logits, n * ne);
        b.qbuf.observe(&self.gate_inp.info.name, h, n);
        compute::matmul(&self.gate_inp.view(file)?, h, n, logits, b.qbuf)?;
        s.chosen.resize(n * k, 0);
        s.weights.resize(n * k, 0.0);
        for t in 0..n {
            route(
                sp,
                &s.logits[t * ne..(t + 1) * ne],
                self.probs_bias.as_deref(),
                &mut s.probs,
                &mut s.select,
                &mut s.chosen[t * k..(t + 1) * k],
                &mut s.weights[t * k..(t + 1) * k],
            );
        }
        // Group the (token, rank) pairs by expert, so each chosen expert's matrices are
        // streamed once for the whole micro-batch.
        s.starts.clear();
        s.starts.resize(ne + 1, 0);
        for &x in &s.chosen {
            s.starts[x as usize + 1] += 1;
        }
        for i in 0..ne {
            s.starts[i + 1] += s.starts[i];
        }
        s.order.resize(n * k, (0, 0));
        s.ranks.clear();
        for i in 0..ne {
            s.ranks.push(s.starts[i] as u32);
        }
        for t in 0..n {
            for r in 0..k {
                let x = s.chosen[t * k + r] as usize;
                let at = s.ranks[x] as usize;
                s.order[at] = (t as u32, r as u32);
                s.ranks[x] += 1;
            }
        }
        let ff = sp.n_ff_exp;
        let outs = sized(&mut s.outs, n * k * e);
        for x in 0..ne {
            let (a, z) = (s.starts[x], s.starts[x + 1]);
            if a == z {
                continue;
            }
            let m = z - a;
            let xs = sized(&mut s.xs, m * e);
            for (i, &(t, _)) in s.order[a..z].iter().enumerate() {
                xs[i * e..(i + 1) * e].copy_from_slice(&h[t as usize * e..][..e]);
            }
            let g = sized(&mut s.gate, m * ff);
            let u = sized(&mut s.up, m * ff);
            for w in [&self.gate, &self.up] {
                b.qbuf.observe_expert(&w.info.name, (x, ne), xs, m);
            }
            let (wg, wu) = (self.gate.view(file, x)?, self.up.view(file, x)?);
            compute::matmul_many(&mut [(&wg, &mut *g), (&wu, &mut *u)], xs, m, b.qbuf)?;
            compute::swiglu(g, u);
            let ys = sized(&mut s.ys, m * e);
            b.qbuf.observe_expert(&self.down.info.name, (x, ne), g, m);
            compute::matmul(&self.down.view(file, x)?, g, m, ys, b.qbuf)?;
            for (i, &(t, r)) in s.order[a..z].iter().enumerate() {
                let w = s.weights[t as usize * k + r as usize];
                let dst = &mut outs[(t as usize * k + r as usize) * e..][..e];
                for (d, &y) in dst.iter_mut().zip(&ys[i * e..(i + 1) * e]) {
                    *d = y * w;
                }
            }
        }
        // Sum the experts in rank order, as llama.cpp's chain of adds does.
        for t in 0..n {
            let o = &mut out[t * e..(t + 1) * e];
            o.copy_from_slice(&outs[t * k * e..][..e]);
            for r in 1..k {
                compute::add_in_place(o, &outs[(t * k + r) * e..][..e]);
            }
        }
        if let Some(shared) = &self.shared {
            let y = sized(&mut s.shared, n * e);
            let fb = FfnBufs {
                gate: b.gate,
                up: b.up,
                qbuf: b.qbuf,
                moe: &mut MoeScratch::default(),
            };
            shared.forward(file, h, n, y, fb)?;
            if let Some(gate) = &self.shared_gate {
                let sg = sized(&mut s.shared_gate, n);
                b.qbuf.observe(&gate.info.name, h, n);
                compute::matmul(&gate.view(file)?, h, n, sg, b.qbuf)?;
                for t in 0..n {
                    let g = 1.0 / (1.0 + (-sg[t]).exp());
                    for v in &mut y[t * e..(t + 1) * e] {
                        *v *= g;
                    }
                }
            }
            compute::add_in_place(out, y);
        }
        Ok(())
    }
}

/// Chooses `chosen.len()` experts for one token from its router `logits` and writes their
/// weights ([`compute::moe::route`] with the spec's router).
pub(crate) fn route(
    sp: &MoeSpec,
    logits: &[f32],
    bias: Option<&[f32]>,
    probs: &mut Vec<f32>,
    select: &mut Vec<f32>,
    chosen: &mut [u32],
    weights: &mut [f32],
) {
    compute::moe::route(&sp.router(), logits, bias, probs, select, chosen, weights)
}

impl MoeSpec {
    /// The router's part of the spec.
    pub fn router(&self) -> compute::moe::Router {
        compute::moe::Router {
            n_expert: self.n_expert,
            n_used: self.n_used,
            gating: self.gating,
            norm_weights: self.norm_weights,
            weights_scale: self.weights_scale,
            n_group: self.n_group,
            n_group_used: self.n_group_used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gating: Gating) -> MoeSpec {
        MoeSpec {
            n_expert: 8,
            n_used: 2,
            n_ff_exp: 4,
            gating,
            norm_weights: false,
            weights_scale: 0.0,
            n_group: 0,
            n_group_used: 0,
            shared: Shared::None,
            n_ff_shared: 0,
        }
    }

    /// The router written out plainly in f64 (DeepSeek-V3's `MoEGate` in the reference
    /// implementation): scores, biased selection within the best groups, weights.
    fn reference(sp: &MoeSpec, logits: &[f32], bias: Option<&[f32]>) -> (Vec<u32>, Vec<f64>) {
        let l: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let probs: Vec<f64> = match sp.gating {
            Gating::Softmax => {
                let m = l.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            }
            Gating::Sigmoid => l.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            Gating::SoftmaxWeight => l.clone(),
        };
        let mut sel: Vec<f64> = probs
            .iter()
            .enumerate()
            .map(|(i, p)| p + bias.map_or(0.0, |b| b[i] as f64))
            .collect();
        if sp.n_group > 1 {
            let per = sp.n_expert / sp.n_group;
            let mut groups: Vec<(f64, usize)> = (0..sp.n_group)
                .map(|g| {
                    let mut v = sel[g * per..(g + 1) * per].to_vec();
                    v.sort_by(|a, b| b.partial_cmp(a).unwrap());
                    (v.iter().take(2).sum(), g)
                })
                .collect();
            groups.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
            for &(_, g) in &groups[sp.n_group_used..] {
                for v in &mut sel[g * per..(g + 1) * per] {
                    *v = f64::NEG_INFINITY;
                }
            }
        }
        let mut idx: Vec<usize> = (0..sp.n_expert).collect();
        idx.sort_by(|&a, &b| sel[b].partial_cmp(&sel[a]).unwrap());
        let chosen: Vec<u32> = idx[..sp.n_used].iter().map(|&i| i as u32).collect();
        let mut w: Vec<f64> = chosen.iter().map(|&c| probs[c as usize]).collect();
        if sp.gating == Gating::SoftmaxWeight {
            let m = w.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = w.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            w = e.iter().map(|v| v / s).collect();
        }
        if sp.norm_weights {
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= s);
        }
        if sp.weights_scale != 0.0 {
            w.iter_mut().for_each(|v| *v *= sp.weights_scale as f64);
        }
        (chosen, w)
    }

    fn check(sp: &MoeSpec, logits: &[f32], bias: Option<&[f32]>) -> Vec<u32> {
        let (mut p, mut s) = (Vec::new(), Vec::new());
        let mut chosen = vec![0u32; sp.n_used];
        let mut w = vec![0f32; sp.n_used];
        route(sp, logits, bias, &mut p, &mut s, &mut chosen, &mut w);
        let (rc, rw) = reference(sp, logits, bias);
        assert_eq!(chosen, rc, "{sp:?}");
        for (a, b) in w.iter().zip(&rw) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b} ({sp:?})");
        }
        chosen
    }

    #[test]
    fn router_matches_a_plain_reference() {
        let logits = [0.3f32, -1.2, 2.5, 0.9, 2.4, -0.1, 1.7, 0.0];
        for gating in [Gating::Softmax, Gating::Sigmoid, Gating::SoftmaxWeight] {
            let mut sp = spec(gating);
            assert_eq!(check(&sp, &logits, None), vec![2, 4]);
            sp.norm_weights = true;
            sp.weights_scale = 2.5;
            sp.n_used = 3;
            assert_eq!(check(&sp, &logits, None), vec![2, 4, 6]);
        }
    }

    #[test]
    fn selection_bias_chooses_but_does_not_weight() {
        let logits = [0.3f32, -1.2, 2.5, 0.9, 2.4, -0.1, 1.7, 0.0];
        let bias = [0.0f32, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let sp = spec(Gating::Sigmoid);
        // Expert 1 has the lowest logit but wins through the bias...
        assert_eq!(check(&sp, &logits, Some(&bias)), vec![1, 2]);
        // ...and is weighted by its own (unbiased) probability.
        let (mut p, mut s, mut c, mut w) = (Vec::new(), Vec::new(), vec![0; 2], vec![0.0; 2]);
        route(&sp, &logits, Some(&bias), &mut p, &mut s, &mut c, &mut w);
        assert!((w[0] - 1.0 / (1.0 + 1.2f32.exp())).abs() < 1e-6);
    }

    #[test]
    fn group_limited_routing_keeps_only_the_best_groups() {
        // 4 groups of 2 experts. Expert 4 has the best score alone (sigmoid(3) = 0.95), but
        // its group scores sigmoid(3) + sigmoid(-5) = 0.96, below groups 1 (0.71 + 0.69)
        // and 3 (0.72 + 0.71): only experts 2, 3, 6, 7 are eligible.
        let logits = [0.5f32, 0.5, 0.9, 0.8, 3.0, -5.0, 0.95, 0.9];
        let mut sp = spec(Gating::Sigmoid);
        sp.n_group = 4;
        sp.n_group_used = 2;
        let chosen = check(&sp, &logits, None);
        assert!(
            chosen.iter().all(|&c| [2, 3, 6, 7].contains(&c)),
            "{chosen:?}"
        );
        sp.n_used = 4;
        sp.norm_weights = true;
        check(&sp, &logits, None);
        // Biased group selection.
        let bias = [0.0f32, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0];
        sp.n_used = 2;
        let chosen = check(&sp, &logits, Some(&bias));
        assert!(chosen.contains(&5) || chosen.contains(&4), "{chosen:?}");
    }
}

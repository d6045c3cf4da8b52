//! Mixture-of-experts layers on a backend, as `blocks/moe.rs` computes them: router logits
//! (one matrix product), the backend's router ([`Backend::route`], on the device for a GPU:
//! no read-back between layers), each token's chosen experts multiplied in their GGUF types
//! straight from the stacked expert tensors ([`Backend::matmul_id`]), SwiGLU, the weighted
//! sum in rank order, then the shared expert (gated by `sigmoid(ffn_gate_inp_shexp · x)`
//! for Qwen2-MoE) added.

use compute::backend::{Backend, GluKind, Span};
use compute::moe::Router;

use super::run::BackendWork;
use super::{BFfn, BackendModel, Builder, Dims};
use crate::blocks::moe::Moe;
use crate::ModelError;

/// A MoE FFN's weights on a backend (indices into the model's matrices and vectors).
pub(super) struct BMoe {
    router: Router,
    gate_inp: usize,
    /// Selection bias (`exp_probs_b`).
    bias: Option<usize>,
    /// Stacks of `n_expert` matrices.
    gate: usize,
    up: usize,
    down: usize,
    ff: usize,
    shared: Option<BFfn>,
    shared_gate: Option<usize>,
}

/// Uploads `m`'s router, experts and shared expert.
pub(super) fn build<B: Backend>(bd: &mut Builder<B>, m: &Moe) -> Result<(BFfn, Dims), ModelError> {
    let sp = &m.spec;
    let router = sp.router();
    router.check()?;
    let ne = sp.n_expert;
    let mut stack = |x: &crate::blocks::moe::Experts| bd.stack(&x.info, ne, x.rows, x.cols);
    let (gate, up, down) = (stack(&m.gate)?, stack(&m.up)?, stack(&m.down)?);
    let (shared, mut dims) = match &m.shared {
        Some(f) => {
            let (f, d) = bd.ffn(f)?;
            (Some(f), d)
        }
        None => (None, Dims::default()),
    };
    dims.n_expert = ne;
    dims.n_used = sp.n_used;
    dims.ff_exp = sp.n_ff_exp;
    dims.shared = shared.is_some();
    let moe = BMoe {
        router,
        gate_inp: bd.matrix(&m.gate_inp)?,
        bias: bd.opt_vector(&m.probs_bias),
        gate,
        up,
        down,
        ff: sp.n_ff_exp,
        shared,
        shared_gate: m.shared_gate.as_ref().map(|g| bd.matrix(g)).transpose()?,
    };
    Ok((BFfn::Moe(Box::new(moe)), dims))
}

impl<B: Backend> BackendModel<B> {
    /// `out = moe(s.h)` for `n` rows.
    pub(super) fn moe(
        &self,
        b: &B,
        s: &BackendWork<B>,
        m: &BMoe,
        n: usize,
        out: &B::Tensor,
    ) -> Result<(), ModelError> {
        let (e, k, ne, ff) = (self.n_embd, m.router.n_used, m.router.n_expert, m.ff);
        let h = Span::rows(&s.h, e);
        let w = &self.matrices;
        b.matmul(&w[m.gate_inp], h, n, Span::rows(&s.ext.router, ne))?;
        let bias = m.bias.map(|i| &self.vectors[i]);
        b.route(
            &m.router,
            &s.ext.router,
            bias,
            n,
            &s.ext.expert_ids,
            &s.ext.expert_w,
        )?;
        // Row t * k + j: token t's j-th expert.
        let (g, u) = (
            Span::rows(&s.ext.exp_gate, ff),
            Span::rows(&s.ext.exp_up, ff),
        );
        b.matmul_id(&w[m.gate], &s.ext.expert_ids, h, k, n * k, g)?;
        b.matmul_id(&w[m.up], &s.ext.expert_ids, h, k, n * k, u)?;
        b.glu(GluKind::SwiGlu, g, u, ff, n * k)?;
        let y = Span::rows(&s.ext.exp_out, e);
        b.matmul_id(&w[m.down], &s.ext.expert_ids, g, 1, n * k, y)?;
        b.weighted_sum(y, &s.ext.expert_w, k, e, n, Span::rows(out, e))?;
        if let Some(sh) = &m.shared {
            self.ffn(b, s, sh, n, &s.ext.shared)?;
            let add = match m.shared_gate {
                Some(sg) => {
                    b.matmul(&w[sg], h, n, Span::rows(&s.ext.shared_gate, 1))?;
                    b.sigmoid(&s.ext.shared_gate, n)?;
                    // The routed outputs are summed: their buffer takes the gated expert.
                    let sh = Span::rows(&s.ext.shared, e);
                    b.weighted_sum(sh, &s.ext.shared_gate, 1, e, n, y)?;
                    &s.ext.exp_out
                }
                None => &s.ext.shared,
            };
            b.add(out, add, n * e)?;
        }
        Ok(())
    }
}

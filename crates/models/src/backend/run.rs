//! Running a [`BackendModel`]: the per-sequence state (KV caches and activation buffers
//! made once, for micro-batches of up to `ubatch` tokens) and the forward pass.

use compute::backend::{Backend, RopeSpec, Span};

use super::{BAttn, BFfn, BNorm, BQkv, BResidual, BackendModel};
use crate::ModelError;

/// One sequence on a backend: its KV caches and the buffers a micro-batch works in, all
/// made once (decoding allocates no device memory).
pub struct BackendState<B: Backend> {
    caches: Vec<B::Cache>,
    /// Slots per layer's cache (`max_seq_len`, or a sliding-window ring).
    slots: Vec<usize>,
    windows: Vec<usize>,
    n_cached: usize,
    max_seq_len: usize,
    ubatch: usize,
    long_context: bool,
    ids: B::Tensor,
    x: B::Tensor,
    h: B::Tensor,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    fused: B::Tensor,
    att: B::Tensor,
    o: B::Tensor,
    f: B::Tensor,
    gate: B::Tensor,
    up: B::Tensor,
    table: B::Tensor,
    host_table: Vec<f32>,
    /// Logits of up to `logit_rows` rows.
    logits: B::Tensor,
    logit_rows: usize,
}

impl<B: Backend> BackendState<B> {
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Positions cached.
    pub fn n_cached(&self) -> usize {
        self.n_cached
    }
}

fn norm<B: Backend>(
    b: &B,
    m: &BackendModel<B>,
    nm: &BNorm,
    x: &B::Tensor,
    n: usize,
    rows: usize,
    y: &B::Tensor,
) -> Result<(), ModelError> {
    let w = Some(&m.vectors[nm.w]);
    let bias = nm.b.map(|i| &m.vectors[i]);
    b.norm(nm.layer, x, w, bias, nm.eps, n, rows, y)?;
    Ok(())
}

impl<B: Backend> BackendModel<B> {
    /// A state for up to `max_seq_len` positions, run in micro-batches of `ubatch` tokens.
    pub fn new_state(
        &self,
        b: &B,
        max_seq_len: usize,
        ubatch: usize,
    ) -> Result<BackendState<B>, ModelError> {
        let ub = ubatch.clamp(1, max_seq_len.max(1));
        let e = self.n_embd;
        let (mut qd, mut kd, mut vd, mut fd, mut ad, mut ffd, mut rot) = (0, 0, 0, 0, 0, 0, 0);
        let mut caches = Vec::new();
        let (mut slots, mut windows) = (Vec::new(), Vec::new());
        for l in &self.layers {
            let a = &l.attn;
            let (q, k, v) = (a.params.n_head * a.dk, a.n_kv * a.dk, a.n_kv * a.dv);
            qd = qd.max(q);
            kd = kd.max(k);
            vd = vd.max(v);
            fd = fd.max(q + k + v);
            ad = ad.max(a.params.n_head * a.dv);
            rot = rot.max(a.n_rot);
            ffd = ffd.max(match l.ffn {
                BFfn::Gated { ff, gate: None, .. } => 2 * ff,
                BFfn::Gated { ff, .. } | BFfn::Plain { ff, .. } => ff,
            });
            let c = b.kv_cache(max_seq_len, a.params.window, ub, a.n_kv, a.dk, a.dv)?;
            slots.push(b.cache_slots(&c));
            caches.push(c);
            windows.push(a.params.window);
        }
        let n_tables = self.ropes.len();
        let n_ctx = max_seq_len.max(1).next_multiple_of(256);
        Ok(BackendState {
            caches,
            slots,
            windows,
            n_cached: 0,
            max_seq_len,
            ubatch: ub,
            long_context: n_ctx > self.n_ctx_orig,
            ids: b.tensor(ub),
            x: b.tensor(ub * e),
            h: b.tensor(ub * e),
            q: b.tensor(ub * qd),
            k: b.tensor(ub * kd),
            v: b.tensor(ub * vd),
            fused: b.tensor(ub * fd),
            att: b.tensor(ub * ad),
            o: b.tensor(ub * e),
            f: b.tensor(ub * e),
            gate: b.tensor(ub * ffd),
            up: b.tensor(ub * ffd),
            table: b.tensor(n_tables * ub * rot),
            host_table: vec![0.0; n_tables * ub * rot],
            logits: b.tensor(self.n_vocab),
            logit_rows: 1,
        })
    }

    /// Runs `tokens` at positions `start_pos..` (anything cached from there on is replaced)
    /// and returns the last token's logits, or every token's (row per token) with
    /// `all_logits`.
    pub fn forward(
        &self,
        b: &B,
        s: &mut BackendState<B>,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if start_pos > s.n_cached {
            return Err(ModelError::Input(format!(
                "start position {start_pos} leaves a gap: only {} positions are cached",
                s.n_cached
            )));
        }
        if start_pos + tokens.len() > s.max_seq_len {
            return Err(ModelError::Input(format!(
                "positions up to {} exceed the state's max_seq_len {}",
                start_pos + tokens.len(),
                s.max_seq_len
            )));
        }
        // Going back in a ring works only while it still holds the window of start_pos.
        for (&slots, &w) in s.slots.iter().zip(&s.windows) {
            let need = if w > 0 {
                (start_pos + 1).saturating_sub(w)
            } else {
                0
            };
            if start_pos < s.n_cached && need < s.n_cached.saturating_sub(slots) {
                return Err(ModelError::Input(format!(
                    "cannot continue from position {start_pos}: the sliding-window cache no \
                     longer holds the keys it needs"
                )));
            }
        }
        s.n_cached = start_pos;
        let nv = self.n_vocab;
        let mut out = Vec::with_capacity(if all_logits { tokens.len() * nv } else { nv });
        for (ci, chunk) in tokens.chunks(s.ubatch).enumerate() {
            let last = (ci + 1) * s.ubatch >= tokens.len();
            let keep = if all_logits {
                chunk.len()
            } else if last {
                1
            } else {
                0
            };
            let pos = start_pos + ci * s.ubatch;
            self.micro_batch(b, s, chunk, pos, keep, &mut out)?;
            s.n_cached = pos + chunk.len();
        }
        Ok(out)
    }

    /// One micro-batch of `n <= ubatch` tokens at `pos..`; the last `keep` rows' logits are
    /// appended to `out`.
    fn micro_batch(
        &self,
        b: &B,
        s: &mut BackendState<B>,
        tokens: &[u32],
        pos: usize,
        keep: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let n = tokens.len();
        let e = self.n_embd;
        for &id in tokens {
            if id as usize >= self.n_tokens {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.n_tokens
                )));
            }
        }
        // Host-made rope tables, one per distinct rope: [rope][token][n_rot].
        let rot = s.host_table.len() / (self.ropes.len().max(1) * s.ubatch).max(1);
        for (ri, r) in self.ropes.iter().enumerate() {
            for t in 0..n {
                let at = (ri * s.ubatch + t) * rot;
                r.fill_cache(pos + t, &mut s.host_table[at..at + r.n_rot]);
            }
        }
        if !self.ropes.is_empty() {
            b.write(&s.table, &s.host_table)?;
        }
        b.write_ids(&s.ids, tokens)?;
        b.get_rows(
            &self.matrices[self.tok_embd],
            &s.ids,
            n,
            Span::rows(&s.x, e),
        )?;
        if let Some(sc) = self.embd_scale {
            b.scale(&s.x, sc, n * e)?;
        }
        for (il, l) in self.layers.iter().enumerate() {
            norm(b, self, &l.attn_norm, &s.x, e, n, &s.h)?;
            let (qs, ks, vs) = self.qkv(b, s, &l.attn, n)?;
            let a = &l.attn;
            let ti = match (a.rope_long, s.long_context) {
                (Some(long), true) => long,
                _ => a.rope,
            };
            let table = Span::rows(&s.table, rot).at(ti * s.ubatch * rot);
            let spec = |heads, in_place| RopeSpec {
                n_heads: heads,
                head_dim: a.dk,
                n_rot: a.n_rot,
                mode: a.mode,
                in_place,
            };
            // ggml ropes K in place when it is its own tensor, a view of a fused output not.
            let k_in_place = matches!(a.qkv, BQkv::Separate { .. });
            b.rope(qs, n, table, spec(a.params.n_head, false))?;
            b.rope(ks, n, table, spec(a.n_kv, k_in_place))?;
            if a.q_scale != 1.0 {
                b.scale(&s.q, a.q_scale, n * a.params.n_head * a.dk)?;
            }
            b.kv_store(&s.caches[il], ks, vs, n, pos)?;
            let arow = a.params.n_head * a.dv;
            b.attention(
                &s.caches[il],
                &a.params,
                qs,
                n,
                pos,
                Span::rows(&s.att, arow),
            )?;
            b.matmul(
                &self.matrices[a.wo],
                Span::rows(&s.att, arow),
                n,
                Span::rows(&s.o, e),
            )?;
            if let Some(bo) = a.bo {
                b.add_bias(&s.o, &self.vectors[bo], n * e)?;
            }
            if let Some(pn) = &l.post_attn_norm {
                norm(b, self, pn, &s.o, e, n, &s.o)?;
            }
            match &l.residual {
                BResidual::Sequential(ffn_norm) => {
                    b.add(&s.x, &s.o, n * e)?;
                    norm(b, self, ffn_norm, &s.x, e, n, &s.h)?;
                    self.ffn(b, s, &l.ffn, n)?;
                    if let Some(pn) = &l.post_ffn_norm {
                        norm(b, self, pn, &s.f, e, n, &s.f)?;
                    }
                    b.add(&s.x, &s.f, n * e)?;
                }
                BResidual::ParallelShared => {
                    self.ffn(b, s, &l.ffn, n)?;
                    b.add(&s.o, &s.f, n * e)?;
                    b.add(&s.x, &s.o, n * e)?;
                }
                BResidual::Parallel(ffn_norm) => {
                    norm(b, self, ffn_norm, &s.x, e, n, &s.h)?;
                    self.ffn(b, s, &l.ffn, n)?;
                    b.add(&s.x, &s.f, n * e)?;
                    b.add(&s.x, &s.o, n * e)?;
                }
            }
        }
        if keep == 0 {
            return b.flush().map_err(Into::into);
        }
        norm(b, self, &self.output_norm, &s.x, e, n, &s.h)?;
        // The vocabulary projection in groups of rows whose logits fit one tensor (a GPU
        // binding): a 512-token prompt of a 262k vocabulary is 512 MiB of logits.
        let nv = self.n_vocab;
        let per = (b.max_elements() / nv).clamp(1, keep);
        if per > s.logit_rows {
            s.logits = b.tensor(per * nv);
            s.logit_rows = per;
        }
        for r0 in (0..keep).step_by(per) {
            let cnt = per.min(keep - r0);
            b.matmul(
                &self.matrices[self.output],
                Span::rows(&s.h, e).at((n - keep + r0) * e),
                cnt,
                Span::rows(&s.logits, nv),
            )?;
            if let Some(ob) = self.output_bias {
                b.add_bias(&s.logits, &self.vectors[ob], cnt * nv)?;
            }
            if self.final_softcap != 0.0 {
                b.softcap(&s.logits, self.final_softcap, cnt * nv)?;
            }
            out.extend(b.read(&s.logits, cnt * nv)?);
        }
        Ok(())
    }

    /// Q/K/V of the normalised rows in `s.h` (biases added, Q/K normed): spans of Q, K, V.
    fn qkv<'s>(
        &self,
        b: &B,
        s: &'s BackendState<B>,
        a: &BAttn,
        n: usize,
    ) -> Result<QkvSpans<'s, B>, ModelError> {
        let e = self.n_embd;
        let (qd, kd, vd) = (a.params.n_head * a.dk, a.n_kv * a.dk, a.n_kv * a.dv);
        let h = Span::rows(&s.h, e);
        Ok(match &a.qkv {
            BQkv::Separate { q, k, v, b: bias } => {
                for ((w, t, d), bi) in [(q, &s.q, qd), (k, &s.k, kd), (v, &s.v, vd)]
                    .into_iter()
                    .zip(bias)
                {
                    b.matmul(&self.matrices[*w], h, n, Span::rows(t, d))?;
                    if let Some(bi) = bi {
                        b.add_bias(t, &self.vectors[*bi], n * d)?;
                    }
                }
                if let Some(qn) = &a.q_norm {
                    norm(b, self, qn, &s.q, a.dk, n * a.params.n_head, &s.q)?;
                }
                if let Some(kn) = &a.k_norm {
                    norm(b, self, kn, &s.k, a.dk, n * a.n_kv, &s.k)?;
                }
                (
                    Span::rows(&s.q, qd),
                    Span::rows(&s.k, kd),
                    Span::rows(&s.v, vd),
                )
            }
            BQkv::Fused { qkv, bias } => {
                let row = qd + kd + vd;
                b.matmul(&self.matrices[*qkv], h, n, Span::rows(&s.fused, row))?;
                if let Some(bi) = bias {
                    b.add_bias(&s.fused, &self.vectors[*bi], n * row)?;
                }
                let f = Span::rows(&s.fused, row);
                (f, f.at(qd), f.at(qd + kd))
            }
        })
    }

    /// `s.f = ffn(s.h)` for `n` rows.
    fn ffn(&self, b: &B, s: &BackendState<B>, f: &BFfn, n: usize) -> Result<(), ModelError> {
        let e = self.n_embd;
        let h = Span::rows(&s.h, e);
        match f {
            BFfn::Gated {
                gate,
                up,
                down,
                ff,
                glu,
            } => {
                let (g, u) = match gate {
                    Some(gw) => {
                        b.matmul(&self.matrices[*gw], h, n, Span::rows(&s.gate, *ff))?;
                        b.matmul(&self.matrices[*up], h, n, Span::rows(&s.up, *ff))?;
                        (Span::rows(&s.gate, *ff), Span::rows(&s.up, *ff))
                    }
                    None => {
                        let both = Span::rows(&s.up, 2 * ff);
                        b.matmul(&self.matrices[*up], h, n, both)?;
                        (both, both.at(*ff))
                    }
                };
                b.glu(*glu, g, u, *ff, n)?;
                b.matmul(&self.matrices[*down], g, n, Span::rows(&s.f, e))?;
            }
            BFfn::Plain {
                up,
                up_b,
                down,
                down_b,
                ff,
            } => {
                b.matmul(&self.matrices[*up], h, n, Span::rows(&s.up, *ff))?;
                if let Some(ub) = up_b {
                    b.add_bias(&s.up, &self.vectors[*ub], n * ff)?;
                }
                b.gelu(&s.up, n * ff)?;
                b.matmul(
                    &self.matrices[*down],
                    Span::rows(&s.up, *ff),
                    n,
                    Span::rows(&s.f, e),
                )?;
                if let Some(db) = down_b {
                    b.add_bias(&s.f, &self.vectors[*db], n * e)?;
                }
            }
        }
        Ok(())
    }
}

type QkvSpans<'s, B> = (
    Span<'s, <B as Backend>::Tensor>,
    Span<'s, <B as Backend>::Tensor>,
    Span<'s, <B as Backend>::Tensor>,
);

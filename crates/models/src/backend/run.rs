//! Running a [`BackendModel`]: the per-sequence state (KV caches), the work buffers of a
//! micro-batch (made once and grown, never per step) and the forward pass, for one
//! sequence or several together as `Model::forward_multi` runs them.

use compute::backend::{Backend, RopeSpec, Span};

use super::{BAttn, BFfn, BLayerAttn, BNorm, BQkv, BResidual, BackendModel};
use crate::{Logits, ModelError};

/// One sequence on a backend: its KV caches, and its own work buffers for
/// [`BackendModel::forward`].
pub struct BackendState<B: Backend> {
    pub(super) caches: Vec<B::Cache>,
    /// Slots per layer's cache (`max_seq_len`, or a sliding-window ring).
    slots: Vec<usize>,
    windows: Vec<usize>,
    pub(super) n_cached: usize,
    max_seq_len: usize,
    pub(super) ubatch: usize,
    long_context: bool,
    pub(super) work: Option<BackendWork<B>>,
}

impl<B: Backend> BackendState<B> {
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Positions cached.
    pub fn n_cached(&self) -> usize {
        self.n_cached
    }

    /// Forgets every position from `n` on; returns how many stay cached: `n`, or 0 when a
    /// sliding-window ring has already overwritten keys that position `n` would attend to
    /// (the caller then feeds the prefix again), as `models::State::truncate`.
    pub fn truncate(&mut self, n: usize) -> usize {
        if n >= self.n_cached {
            return self.n_cached;
        }
        let lost = self.slots.iter().zip(&self.windows).any(|(&slots, &w)| {
            let need = if w > 0 { (n + 1).saturating_sub(w) } else { 0 };
            need < self.n_cached.saturating_sub(slots)
        });
        self.n_cached = if lost { 0 } else { n };
        self.n_cached
    }
}

/// The activations of a micro-batch of up to `rows` rows, on the backend. Grown (made
/// again) only when a batch has more rows than any before.
pub struct BackendWork<B: Backend> {
    pub(super) rows: usize,
    ids: B::Tensor,
    x: B::Tensor,
    pub(super) h: B::Tensor,
    pub(super) q: B::Tensor,
    pub(super) k: B::Tensor,
    pub(super) v: B::Tensor,
    pub(super) fused: B::Tensor,
    pub(super) att: B::Tensor,
    pub(super) o: B::Tensor,
    f: B::Tensor,
    gate: B::Tensor,
    up: B::Tensor,
    pub(super) table: B::Tensor,
    /// The buffers of experts and latent attention (boxed: a state sits in the scheduler's
    /// per-slot enum, whose CPU variant is far smaller than these handles).
    pub(super) ext: Box<ExtWork<B>>,
    host_table: Vec<f32>,
    host_ids: Vec<u32>,
    /// Logits of up to `logit_rows` rows.
    logits: B::Tensor,
    logit_rows: usize,
}

/// Work buffers only experts and latent attention use.
pub(super) struct ExtWork<B: Backend> {
    /// Latent attention (`latent.rs`).
    pub(super) qa: B::Tensor,
    pub(super) lat: B::Tensor,
    pub(super) dec: B::Tensor,
    pub(super) heads: B::Tensor,
    /// Row `i`'s query head, `i % n_head`: the matrix of a per-head stack it takes.
    pub(super) head_ids: B::Tensor,
    /// Experts (`experts.rs`): router logits, each row's chosen experts and their weights,
    /// the experts' rows (`n_used` per token), the shared expert's output and gate.
    pub(super) router: B::Tensor,
    pub(super) expert_ids: B::Tensor,
    pub(super) expert_w: B::Tensor,
    pub(super) exp_gate: B::Tensor,
    pub(super) exp_up: B::Tensor,
    pub(super) exp_out: B::Tensor,
    pub(super) shared: B::Tensor,
    pub(super) shared_gate: B::Tensor,
}

/// One sequence's part of [`BackendModel::forward_multi`]: `tokens` at positions
/// `start_pos..` of `state`.
pub struct BackendSeq<'a, B: Backend> {
    pub state: &'a mut BackendState<B>,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub logits: Logits,
}

/// A sequence's rows in a micro-batch: tokens `c0..c0 + n` of its input at rows
/// `row0..` and positions `start_pos..`; its last `keep` rows' logits go to rows `dest..`
/// of the output.
pub(super) struct Seg {
    pub(super) seq: usize,
    c0: usize,
    pub(super) row0: usize,
    pub(super) n: usize,
    pub(super) start_pos: usize,
    keep: usize,
    dest: usize,
}

pub(super) fn norm<B: Backend>(
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
    /// Work buffers for micro-batches of up to `rows` rows.
    pub fn new_work(&self, b: &B, rows: usize) -> BackendWork<B> {
        let (r, d, e) = (rows.max(1), self.dims, self.n_embd);
        let table = self.pairs.len() * r * d.rot;
        BackendWork {
            rows: r,
            ids: b.tensor(r),
            x: b.tensor(r * e),
            h: b.tensor(r * e),
            q: b.tensor(r * d.q),
            k: b.tensor(r * d.k),
            v: b.tensor(r * d.v),
            fused: b.tensor(r * d.fused + d.fused_pad),
            att: b.tensor(r * d.att),
            o: b.tensor(r * e),
            f: b.tensor(r * e),
            gate: b.tensor(r * d.ff),
            up: b.tensor(r * d.ff),
            table: b.tensor(table),
            ext: Box::new(ExtWork {
                qa: b.tensor(r * d.qa),
                lat: b.tensor(r * d.lat),
                dec: b.tensor(r * d.dec),
                heads: b.tensor(r * d.heads),
                head_ids: {
                    let nh = d.n_head_ids.max(1);
                    let ids: Vec<f32> = (0..r * d.n_head_ids)
                        .map(|i| f32::from_bits((i % nh) as u32))
                        .collect();
                    b.upload(&ids)
                },
                router: b.tensor(r * d.n_expert),
                expert_ids: b.tensor(r * d.n_used),
                expert_w: b.tensor(r * d.n_used),
                exp_gate: b.tensor(r * d.n_used * d.ff_exp),
                exp_up: b.tensor(r * d.n_used * d.ff_exp),
                exp_out: b.tensor(r * d.n_used * e),
                shared: b.tensor(if d.shared { r * e } else { 0 }),
                shared_gate: b.tensor(if d.shared { r } else { 0 }),
            }),
            host_table: vec![0.0; table],
            host_ids: Vec::with_capacity(r),
            logits: b.tensor(self.n_vocab),
            logit_rows: 1,
        }
    }

    /// A state for up to `max_seq_len` positions, run in micro-batches of `ubatch` tokens.
    pub fn new_state(
        &self,
        b: &B,
        max_seq_len: usize,
        ubatch: usize,
    ) -> Result<BackendState<B>, ModelError> {
        let ub = ubatch.clamp(1, max_seq_len.max(1));
        let mut caches = Vec::new();
        let (mut slots, mut windows) = (Vec::new(), Vec::new());
        for l in &self.layers {
            let c = match &l.attn {
                BLayerAttn::Standard(a) => {
                    b.kv_cache(max_seq_len, a.params.window, ub, a.n_kv, a.dk, a.dv)?
                }
                BLayerAttn::Latent(m) => m.cache(b, max_seq_len, ub)?,
            };
            slots.push(b.cache_slots(&c));
            caches.push(c);
            windows.push(l.attn.window());
        }
        let n_ctx = max_seq_len.max(1).next_multiple_of(256);
        Ok(BackendState {
            caches,
            slots,
            windows,
            n_cached: 0,
            max_seq_len,
            ubatch: ub,
            long_context: n_ctx > self.n_ctx_orig,
            work: Some(self.new_work(b, ub)),
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
        let mut work = match s.work.take() {
            Some(w) => w,
            None => self.new_work(b, s.ubatch),
        };
        let logits = if all_logits {
            Logits::All
        } else {
            Logits::Last
        };
        let r = self.forward_multi(
            b,
            &mut [BackendSeq {
                state: &mut *s,
                tokens,
                start_pos,
                logits,
            }],
            &mut work,
        );
        s.work = Some(work);
        r
    }

    /// Several sequences in one pass, as `Model::forward_multi`: the rows of all go through
    /// every weight matrix together, each row is roped at its own position, its keys and
    /// values go to its own state's cache, and attention runs per sequence. Prompts longer
    /// than a state's `ubatch` run in rounds (the k-th chunks of all sequences together).
    /// Returns, sequence after sequence, the logit rows each asked for.
    pub fn forward_multi(
        &self,
        b: &B,
        seqs: &mut [BackendSeq<B>],
        work: &mut BackendWork<B>,
    ) -> Result<Vec<f32>, ModelError> {
        rounds(seqs, self.n_vocab, |seqs, segs, rows, out| {
            self.micro_batch(b, seqs, segs, rows, work, None, Out::Logits(out))
        })
    }

    /// One micro-batch of `n` rows laid out by `segs`: from the tokens (this part has the
    /// embedding) or from `input`, the hidden rows of the part before; to the kept rows'
    /// logits (this part has the output) or to the hidden rows for the part after.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn micro_batch(
        &self,
        b: &B,
        seqs: &mut [BackendSeq<B>],
        segs: &[Seg],
        n: usize,
        s: &mut BackendWork<B>,
        input: Option<&[f32]>,
        out: Out,
    ) -> Result<(), ModelError> {
        if n > s.rows {
            *s = self.new_work(b, n);
        }
        let e = self.n_embd;
        s.host_ids.clear();
        for g in segs {
            let toks = &seqs[g.seq].tokens[g.c0..g.c0 + g.n];
            if let Some(&id) = toks.iter().find(|&&id| id as usize >= self.n_tokens) {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.n_tokens
                )));
            }
            s.host_ids.extend_from_slice(toks);
        }
        // Host-made rope tables, one per distinct (rope, long rope): [pair][row][rot], each
        // row with its own position and its sequence's factor set.
        let rot = self.dims.rot;
        for (pi, &(short, long)) in self.pairs.iter().enumerate() {
            for g in segs {
                let r = match (long, seqs[g.seq].state.long_context) {
                    (Some(l), true) => &self.ropes[l],
                    _ => &self.ropes[short],
                };
                for t in 0..g.n {
                    let at = (pi * s.rows + g.row0 + t) * rot;
                    r.fill_cache(g.start_pos + t, &mut s.host_table[at..at + r.n_rot]);
                }
            }
        }
        if !self.pairs.is_empty() {
            b.write(&s.table, &s.host_table)?;
        }
        match (self.tok_embd, input) {
            (_, Some(hidden)) => b.write(&s.x, &hidden[..n * e])?,
            (Some(te), None) => {
                b.write_ids(&s.ids, &s.host_ids)?;
                b.get_rows(&self.matrices[te], &s.ids, n, Span::rows(&s.x, e))?;
                if let Some(sc) = self.embd_scale {
                    b.scale(&s.x, sc, n * e)?;
                }
            }
            (None, None) => {
                return Err(ModelError::Input(
                    "this part of a split model needs the hidden state of the one before".into(),
                ))
            }
        }
        for (il, l) in self.layers.iter().enumerate() {
            norm(b, self, &l.attn_norm, &s.x, e, n, &s.h)?;
            match &l.attn {
                BLayerAttn::Standard(a) => self.standard(b, seqs, segs, s, a, il, n)?,
                BLayerAttn::Latent(m) => self.latent(b, seqs, segs, s, m, il, n)?,
            }
            if let Some(pn) = &l.post_attn_norm {
                norm(b, self, pn, &s.o, e, n, &s.o)?;
            }
            match &l.residual {
                BResidual::Sequential(ffn_norm) => {
                    b.add(&s.x, &s.o, n * e)?;
                    norm(b, self, ffn_norm, &s.x, e, n, &s.h)?;
                    self.ffn(b, s, &l.ffn, n, &s.f)?;
                    if let Some(pn) = &l.post_ffn_norm {
                        norm(b, self, pn, &s.f, e, n, &s.f)?;
                    }
                    b.add(&s.x, &s.f, n * e)?;
                }
                BResidual::ParallelShared => {
                    self.ffn(b, s, &l.ffn, n, &s.f)?;
                    b.add(&s.o, &s.f, n * e)?;
                    b.add(&s.x, &s.o, n * e)?;
                }
                BResidual::Parallel(ffn_norm) => {
                    norm(b, self, ffn_norm, &s.x, e, n, &s.h)?;
                    self.ffn(b, s, &l.ffn, n, &s.f)?;
                    b.add(&s.x, &s.f, n * e)?;
                    b.add(&s.x, &s.o, n * e)?;
                }
            }
        }
        let (out, (output, output_norm)) = match (out, &self.output) {
            (Out::Hidden(h), _) => {
                *h = b.read(&s.x, n * e)?;
                return Ok(());
            }
            (Out::Logits(out), Some(o)) => (out, o),
            (Out::Logits(_), None) => {
                return Err(ModelError::Input(
                    "this part of a split model has no output projection".into(),
                ))
            }
        };
        if segs.iter().all(|g| g.keep == 0) {
            return b.flush().map_err(Into::into);
        }
        norm(b, self, output_norm, &s.x, e, n, &s.h)?;
        // The vocabulary projection in groups of rows whose logits fit one tensor (a GPU
        // binding): a 512-token prompt of a 262k vocabulary is 512 MiB of logits.
        let nv = self.n_vocab;
        let most = segs.iter().map(|g| g.keep).max().unwrap_or(1);
        let per = (b.max_elements() / nv).clamp(1, most);
        if per > s.logit_rows {
            s.logits = b.tensor(per * nv);
            s.logit_rows = per;
        }
        for g in segs.iter().filter(|g| g.keep > 0) {
            let first = g.row0 + g.n - g.keep;
            for r0 in (0..g.keep).step_by(per) {
                let cnt = per.min(g.keep - r0);
                b.matmul(
                    &self.matrices[*output],
                    Span::rows(&s.h, e).at((first + r0) * e),
                    cnt,
                    Span::rows(&s.logits, nv),
                )?;
                if let Some(ob) = self.output_bias {
                    b.add_bias(&s.logits, &self.vectors[ob], cnt * nv)?;
                }
                if self.final_softcap != 0.0 {
                    b.softcap(&s.logits, self.final_softcap, cnt * nv)?;
                }
                let rows = b.read(&s.logits, cnt * nv)?;
                out[(g.dest + r0) * nv..][..cnt * nv].copy_from_slice(&rows);
            }
        }
        Ok(())
    }

    /// `s.o = attention(s.h)` for the `n` rows of `segs` (biased), each sequence's keys
    /// and values into its layer `il` cache.
    #[allow(clippy::too_many_arguments)]
    fn standard(
        &self,
        b: &B,
        seqs: &mut [BackendSeq<B>],
        segs: &[Seg],
        s: &BackendWork<B>,
        a: &BAttn,
        il: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let (e, rot) = (self.n_embd, self.dims.rot);
        let (qs, ks, vs) = self.qkv(b, s, a, n)?;
        let table = Span::rows(&s.table, rot).at(a.pair * s.rows * rot);
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
        let arow = a.params.n_head * a.dv;
        let att = Span::rows(&s.att, arow);
        for g in segs {
            let cache = &seqs[g.seq].state.caches[il];
            let (q, k, v) = (
                qs.at(g.row0 * qs.stride),
                ks.at(g.row0 * ks.stride),
                vs.at(g.row0 * vs.stride),
            );
            b.kv_store(cache, k, v, g.n, g.start_pos)?;
            b.attention(cache, &a.params, q, g.n, g.start_pos, att.at(g.row0 * arow))?;
        }
        b.matmul(&self.matrices[a.wo], att, n, Span::rows(&s.o, e))?;
        if let Some(bo) = a.bo {
            b.add_bias(&s.o, &self.vectors[bo], n * e)?;
        }
        Ok(())
    }

    /// Q/K/V of the normalised rows in `s.h` (biases added, Q/K normed): spans of Q, K, V.
    fn qkv<'s>(
        &self,
        b: &B,
        s: &'s BackendWork<B>,
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

    /// `out = ffn(s.h)` for `n` rows.
    pub(super) fn ffn(
        &self,
        b: &B,
        s: &BackendWork<B>,
        f: &BFfn,
        n: usize,
        out: &B::Tensor,
    ) -> Result<(), ModelError> {
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
                b.matmul(&self.matrices[*down], g, n, Span::rows(out, e))?;
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
                    Span::rows(out, e),
                )?;
                if let Some(db) = down_b {
                    b.add_bias(out, &self.vectors[*db], n * e)?;
                }
            }
            BFfn::Moe(m) => self.moe(b, s, m, n, out)?,
        }
        Ok(())
    }
}

type QkvSpans<'s, B> = (
    Span<'s, <B as Backend>::Tensor>,
    Span<'s, <B as Backend>::Tensor>,
    Span<'s, <B as Backend>::Tensor>,
);

/// Where a micro-batch's result goes: the kept rows' logits, or the hidden rows (a part of
/// a split model before the last).
pub(super) enum Out<'a> {
    Logits(&'a mut [f32]),
    Hidden(&'a mut Vec<f32>),
}

/// The rounds of a multi-sequence pass: checks every input, then calls `step` per
/// micro-batch round with the segments, their row count and the output (`n_vocab` floats
/// per logit row asked for), and records what each state then holds.
pub(super) fn rounds<B: Backend>(
    seqs: &mut [BackendSeq<B>],
    nv: usize,
    mut step: impl FnMut(&mut [BackendSeq<B>], &[Seg], usize, &mut [f32]) -> Result<(), ModelError>,
) -> Result<Vec<f32>, ModelError> {
    for q in seqs.iter_mut() {
        check_input(q.state, q.tokens, q.start_pos)?;
    }
    let total: usize = seqs.iter().map(|q| q.logits.rows(q.tokens.len())).sum();
    let mut out = vec![0f32; total * nv];
    let mut segs = Vec::with_capacity(seqs.len());
    for round in 0.. {
        segs.clear();
        let (mut rows, mut dest) = (0, 0);
        for (i, q) in seqs.iter().enumerate() {
            let (len, ub) = (q.tokens.len(), q.state.ubatch);
            let c0 = round * ub;
            if c0 < len {
                let n = (c0 + ub).min(len) - c0;
                let (keep, at) = match q.logits {
                    Logits::All => (n, dest + c0),
                    Logits::Last if c0 + n == len => (1, dest),
                    _ => (0, dest),
                };
                segs.push(Seg {
                    seq: i,
                    c0,
                    row0: rows,
                    n,
                    start_pos: q.start_pos + c0,
                    keep,
                    dest: at,
                });
                rows += n;
            }
            dest += q.logits.rows(len);
        }
        if segs.is_empty() {
            break;
        }
        step(seqs, &segs, rows, &mut out)?;
        for g in &segs {
            seqs[g.seq].state.n_cached = g.start_pos + g.n;
        }
    }
    Ok(out)
}

/// Checks that `tokens` can run at `start_pos` on `state`, and forgets what was cached from
/// there on.
pub(super) fn check_input<B: Backend>(
    s: &mut BackendState<B>,
    tokens: &[u32],
    start_pos: usize,
) -> Result<(), ModelError> {
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
    Ok(())
}

//! A model in two parts on two backends (llama.cpp's `--n-gpu-layers`): the token
//! embedding and the first layers on `F` (a GPU), the other layers and the output on `L`
//! (the CPU). Each micro-batch runs the first part, reads its hidden rows back to the host
//! and writes them into the second part's input: one copy of `n_embd` floats per row at the
//! split, and each part keeps the KV caches of its own layers.

use compute::backend::Backend;

use super::run::{check_input, rounds, Out};
use super::{BackendModel, BackendSeq, BackendState, BackendWork};
use crate::{Logits, Model, ModelError};

/// The two parts of a split model.
pub struct SplitModel<F: Backend, L: Backend> {
    front: BackendModel<F>,
    back: BackendModel<L>,
    n_front: usize,
}

/// One sequence on a split model: each part's caches and work buffers.
pub struct SplitState<F: Backend, L: Backend> {
    front: BackendState<F>,
    back: BackendState<L>,
}

/// Work buffers of a multi-sequence pass over a split model.
pub struct SplitWork<F: Backend, L: Backend> {
    front: BackendWork<F>,
    back: BackendWork<L>,
    hidden: Vec<f32>,
}

/// One sequence's part of [`SplitModel::forward_multi`].
pub struct SplitSeq<'a, F: Backend, L: Backend> {
    pub state: &'a mut SplitState<F, L>,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub logits: Logits,
}

impl<F: Backend, L: Backend> SplitState<F, L> {
    pub fn max_seq_len(&self) -> usize {
        self.front.max_seq_len()
    }

    pub fn n_cached(&self) -> usize {
        self.front.n_cached()
    }

    /// As [`BackendState::truncate`], for both parts together.
    pub fn truncate(&mut self, n: usize) -> usize {
        let (a, b) = (self.front.truncate(n), self.back.truncate(n));
        if a == b {
            return a;
        }
        self.front.truncate(0);
        self.back.truncate(0);
        0
    }
}

impl<F: Backend, L: Backend> SplitModel<F, L> {
    /// Layers `0..n_front` (and the embedding) on `front`, the rest (and the output) on
    /// `back`; `n_front` must leave at least one layer on each.
    pub fn load(model: &Model, front: &F, back: &L, n_front: usize) -> Result<Self, ModelError> {
        let n_layer = model.decoder.layers.len();
        if n_front == 0 || n_front >= n_layer {
            return Err(ModelError::Input(format!(
                "a split after layer {n_front} of {n_layer} leaves one part empty"
            )));
        }
        Ok(SplitModel {
            front: BackendModel::load_layers(model, front, 0..n_front)?,
            back: BackendModel::load_layers(model, back, n_front..n_layer)?,
            n_front,
        })
    }

    /// Layers on the first backend.
    pub fn n_front(&self) -> usize {
        self.n_front
    }

    pub fn n_vocab(&self) -> usize {
        self.back.n_vocab()
    }

    pub fn new_state(
        &self,
        (f, l): (&F, &L),
        max_seq_len: usize,
        ubatch: usize,
    ) -> Result<SplitState<F, L>, ModelError> {
        Ok(SplitState {
            front: self.front.new_state(f, max_seq_len, ubatch)?,
            back: self.back.new_state(l, max_seq_len, ubatch)?,
        })
    }

    pub fn new_work(&self, (f, l): (&F, &L), rows: usize) -> SplitWork<F, L> {
        SplitWork {
            front: self.front.new_work(f, rows),
            back: self.back.new_work(l, rows),
            hidden: Vec::new(),
        }
    }

    /// As [`BackendModel::forward_multi`]: each micro-batch through the first part, then
    /// its hidden rows through the second.
    pub fn forward_multi(
        &self,
        (f, l): (&F, &L),
        seqs: &mut [SplitSeq<F, L>],
        work: &mut SplitWork<F, L>,
    ) -> Result<Vec<f32>, ModelError> {
        let mut fronts = Vec::with_capacity(seqs.len());
        let mut backs = Vec::with_capacity(seqs.len());
        for q in seqs.iter_mut() {
            let SplitState { front, back } = &mut *q.state;
            fronts.push(BackendSeq {
                state: front,
                tokens: q.tokens,
                start_pos: q.start_pos,
                logits: q.logits,
            });
            backs.push(BackendSeq {
                state: back,
                tokens: q.tokens,
                start_pos: q.start_pos,
                logits: q.logits,
            });
        }
        for q in backs.iter_mut() {
            check_input(q.state, q.tokens, q.start_pos)?;
        }
        let SplitWork {
            front: fw,
            back: bw,
            hidden,
        } = work;
        let out = rounds(&mut fronts, self.n_vocab(), |fronts, segs, rows, out| {
            self.front
                .micro_batch(f, fronts, segs, rows, fw, None, Out::Hidden(&mut *hidden))?;
            let input = Some(&hidden[..]);
            self.back
                .micro_batch(l, &mut backs, segs, rows, bw, input, Out::Logits(out))
        })?;
        for (fq, bq) in fronts.iter().zip(backs.iter_mut()) {
            bq.state.n_cached = fq.state.n_cached;
        }
        Ok(out)
    }

    /// Runs `tokens` at positions `start_pos..`: the last token's logits, or every token's
    /// with `all_logits` (as [`BackendModel::forward`]).
    pub fn forward(
        &self,
        bs: (&F, &L),
        s: &mut SplitState<F, L>,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let mut work = SplitWork {
            front: match s.front.work.take() {
                Some(w) => w,
                None => self.front.new_work(bs.0, s.front.ubatch),
            },
            back: match s.back.work.take() {
                Some(w) => w,
                None => self.back.new_work(bs.1, s.back.ubatch),
            },
            hidden: Vec::new(),
        };
        let logits = if all_logits {
            Logits::All
        } else {
            Logits::Last
        };
        let seq = SplitSeq {
            state: &mut *s,
            tokens,
            start_pos,
            logits,
        };
        let r = self.forward_multi(bs, &mut [seq], &mut work);
        s.front.work = Some(work.front);
        s.back.work = Some(work.back);
        r
    }
}

//! The decoder-only forward pass every family shares: embed, then per layer
//! norm -> attention -> (post-norm) -> residual -> FFN in the layer's residual layout, then
//! the final norm and the vocabulary projection. A family file only decides which blocks a
//! layer has (see `families/`); this file runs them in llama.cpp's order.

use compute::KvCache;
use gguf::GgufFile;

use crate::blocks::attention::{sized, Attention, AttnBufs, AttnSpec};
use crate::blocks::ffn::{Ffn, FfnBufs};
use crate::blocks::mla::{Mla, MlaBufs, MlaOutBufs};
use crate::blocks::moe::MoeScratch;
use crate::blocks::norm::Norm;
use crate::error::ModelError;
use crate::observe::MatBuf;
use crate::weights::{Loader, Matrix};
use crate::{Config, Logits, SeqBatch};

/// How a layer's attention and FFN outputs join the residual stream.
pub(crate) enum Residual {
    /// `x += attn(norm(x)); x += ffn(ffn_norm(x))` (llama, gemma, phi3, ...).
    Sequential { ffn_norm: Norm },
    /// One norm feeds both: `x = (attn(n(x)) + ffn(n(x))) + x` (Phi-2).
    ParallelShared,
    /// `x = (ffn(ffn_norm(x)) + x) + attn(n(x))` (GPT-NeoX `use_parallel_residual`).
    Parallel { ffn_norm: Norm },
}

/// A layer's attention block. Every use goes through the methods below, the one place that
/// tells the kinds apart.
pub(crate) enum LayerAttn {
    /// Q/K/V heads over an ordinary KV cache.
    Standard(Attention),
    /// Multi-head latent attention over a latent cache (DeepSeek).
    Latent(Mla),
}

impl LayerAttn {
    pub fn load(ld: &Loader, cfg: &Config, il: usize, spec: AttnSpec) -> Result<Self, ModelError> {
        Ok(match spec.latent {
            Some(dims) => LayerAttn::Latent(Mla::load(ld, cfg, il, dims, spec.rope, spec.params)?),
            None => LayerAttn::Standard(Attention::load(ld, cfg, il, spec)?),
        })
    }

    /// The cache this block reads: one per layer; a sliding-window layer gets a ring sized
    /// for micro-batches of `ubatch` tokens unless `swa_full`.
    fn new_cache(
        &self,
        max_seq_len: usize,
        kv: compute::KvDtype,
        ubatch: usize,
        swa_full: bool,
    ) -> KvCache {
        match self {
            LayerAttn::Standard(a) => {
                let window = if swa_full { 0 } else { a.params.window };
                KvCache::windowed(kv, max_seq_len, window, ubatch, a.n_head_kv, a.dk, a.dv)
            }
            LayerAttn::Latent(m) => m.new_cache(max_seq_len, kv),
        }
    }

    /// Query row per token (as `attend` reads it) and attention output row per token (as
    /// `output` reads it).
    fn row_lens(&self) -> (usize, usize) {
        match self {
            LayerAttn::Standard(a) => (a.params.n_head * a.dk, a.params.n_head * a.dv),
            LayerAttn::Latent(m) => (m.q_len(), m.att_len()),
        }
    }

    /// Projects the normalised rows `h` (one per entry of `rows`): the queries stay in
    /// `s.q`, each row's keys and values go to `store`.
    fn project_and_store(
        &self,
        file: &GgufFile,
        h: &[f32],
        rows: &[RowPos],
        store: &mut StoreKv,
        s: &mut Scratch,
        flash: bool,
    ) -> Result<(), ModelError> {
        match self {
            LayerAttn::Standard(a) => {
                let bufs = AttnBufs {
                    q: &mut s.q,
                    k: &mut s.k,
                    v: &mut s.v,
                    fused: &mut s.fused,
                    rope: &mut s.rope,
                    qbuf: &mut s.qbuf,
                };
                a.project_and_store(file, h, rows, store, bufs, flash)
            }
            LayerAttn::Latent(m) => {
                let bufs = MlaBufs {
                    q: &mut s.q,
                    kv: &mut s.k,
                    q_raw: &mut s.v,
                    tmp: &mut s.fused,
                    rope: &mut s.rope,
                    qbuf: &mut s.qbuf,
                };
                m.project_and_store(file, h, rows, store, bufs)
            }
        }
    }

    /// The softmax attention settings (both kinds attend with `compute::attention`).
    fn params(&self) -> &compute::AttnParams {
        match self {
            LayerAttn::Standard(a) => &a.params,
            LayerAttn::Latent(m) => &m.params,
        }
    }

    /// Attention of the `n` queries in `q` over `cache` into `out`.
    fn attend(
        &self,
        cache: &KvCache,
        q: &[f32],
        n: usize,
        start_pos: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        compute::attention(self.params(), cache, q, n, start_pos, out)?;
        Ok(())
    }

    /// The output projection of `n` attention rows into `out` (`n * n_embd`; the standard
    /// block only uses `b.qbuf`).
    fn output(
        &self,
        file: &GgufFile,
        att: &[f32],
        n: usize,
        out: &mut [f32],
        b: MlaOutBufs,
    ) -> Result<(), ModelError> {
        match self {
            LayerAttn::Standard(a) => a.output(file, att, n, out, b.qbuf),
            LayerAttn::Latent(m) => m.output(file, att, n, out, b),
        }
    }
}

pub(crate) struct Layer {
    pub attn_norm: Norm,
    pub attn: LayerAttn,
    /// Norm of the attention output before the residual add (Gemma 2/3).
    pub post_attn_norm: Option<Norm>,
    pub residual: Residual,
    pub ffn: Ffn,
    /// Norm of the FFN output before the residual add (Gemma 2/3).
    pub post_ffn_norm: Option<Norm>,
}

pub(crate) struct Decoder {
    pub tok_embd: Matrix,
    /// Multiplies the looked-up embeddings (gemma: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    pub layers: Vec<Layer>,
    pub output_norm: Norm,
    pub output: Matrix,
    pub output_bias: Option<Vec<f32>>,
    /// Final logit soft-capping `c * tanh(l / c)` (Gemma 2); 0 disables it.
    pub final_softcap: f32,
}

/// Where one row of a micro-batch belongs: its sequence (index into the batch) and
/// position, and whether that sequence ropes with LongRoPE's long factors.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RowPos {
    pub seq: usize,
    pub pos: usize,
    pub long_context: bool,
}

/// Takes a projected row's keys and values (by row index in the micro-batch) into the
/// cache of the row's sequence.
pub(crate) type StoreKv<'a> = dyn FnMut(usize, &[f32], &[f32]) -> Result<(), ModelError> + 'a;

/// Which of a segment's rows produce logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    None,
    Last,
    All,
}

/// One sequence's rows in a micro-batch: tokens `c0..c0 + n` of its input, at rows
/// `row0..row0 + n` of the batch and positions `start_pos..`; the logits it keeps go to
/// rows `dest..` of the output.
#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: usize,
    c0: usize,
    row0: usize,
    n: usize,
    start_pos: usize,
    keep: Keep,
    dest: usize,
}

impl Segment {
    /// The rows (first, count) whose logits are wanted.
    fn kept(&self) -> Option<(usize, usize)> {
        match self.keep {
            Keep::None => None,
            Keep::Last => Some((self.row0 + self.n - 1, 1)),
            Keep::All => Some((self.row0, self.n)),
        }
    }
}

/// The layout of the micro-batch being run (reused buffers).
#[derive(Default)]
struct Plan {
    rows: Vec<RowPos>,
    segs: Vec<Segment>,
}

/// Working buffers reused across calls so decoding does not allocate per token.
#[derive(Default)]
pub(crate) struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    fused: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    f: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    rope: Vec<f32>,
    /// The matmuls' quantized activations, and the activation observer if one is set.
    pub(crate) qbuf: MatBuf,
    moe: MoeScratch,
    plan: Plan,
}

impl Decoder {
    /// One cache per layer; a sliding-window layer gets a ring sized for micro-batches of
    /// `ubatch` tokens unless `swa_full`.
    pub fn new_caches(
        &self,
        max_seq_len: usize,
        kv: compute::KvDtype,
        ubatch: usize,
        swa_full: bool,
    ) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|l| l.attn.new_cache(max_seq_len, kv, ubatch, swa_full))
            .collect()
    }

    /// Runs every sequence's tokens from its start position, in micro-batches of at most
    /// its state's `ubatch` tokens, as llama.cpp does: a sliding-window ring only has room
    /// for one micro-batch beyond its window, and the batch kernels then see the same row
    /// counts as llama.cpp's. Each micro-batch takes the next chunk of every sequence that
    /// has tokens left, and all its rows go through each weight matrix together. `logits`
    /// gets, sequence after sequence, the rows each one asked for.
    pub fn forward(
        &self,
        file: &GgufFile,
        seqs: &mut [SeqBatch],
        s: &mut Scratch,
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let nv = self.output.rows;
        let total: usize = seqs.iter().map(|q| q.logits.rows(q.tokens.len())).sum();
        // Every element is overwritten: resizing a reused buffer neither allocates nor
        // zeroes (a fresh 1 MiB vocabulary row per token would do both).
        logits.resize(total * nv, 0.0);
        let mut plan = std::mem::take(&mut s.plan);
        let mut r = Ok(());
        for round in 0.. {
            plan.rows.clear();
            plan.segs.clear();
            let mut dest = 0;
            for (i, q) in seqs.iter().enumerate() {
                let len = q.tokens.len();
                let ub = q.state.ubatch.max(1);
                let c0 = round * ub;
                if c0 < len {
                    let c1 = (c0 + ub).min(len);
                    let keep = match q.logits {
                        Logits::All => Keep::All,
                        Logits::Last if c1 == len => Keep::Last,
                        _ => Keep::None,
                    };
                    let start_pos = q.start_pos + c0;
                    plan.segs.push(Segment {
                        seq: i,
                        c0,
                        row0: plan.rows.len(),
                        n: c1 - c0,
                        start_pos,
                        keep,
                        dest: if keep == Keep::All { dest + c0 } else { dest },
                    });
                    plan.rows
                        .extend((start_pos..q.start_pos + c1).map(|pos| RowPos {
                            seq: i,
                            pos,
                            long_context: q.state.long_context,
                        }));
                }
                dest += q.logits.rows(len);
            }
            if plan.segs.is_empty() {
                break;
            }
            r = self.forward_batch(file, seqs, &plan, s, logits);
            if r.is_err() {
                break;
            }
        }
        s.plan = plan;
        r
    }

    /// One micro-batch laid out by `plan`, its logits going to their rows of `logits`.
    fn forward_batch(
        &self,
        file: &GgufFile,
        seqs: &mut [SeqBatch],
        plan: &Plan,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        let e = self.tok_embd.cols;
        let (rows, segs) = (&plan.rows[..], &plan.segs[..]);
        let mut n = rows.len();
        let x = sized(&mut s.x, n * e);
        for g in segs {
            let tokens = &seqs[g.seq].tokens[g.c0..g.c0 + g.n];
            self.embed(file, tokens, &mut x[g.row0 * e..(g.row0 + g.n) * e])?;
        }
        let any_logits = segs.iter().any(|g| g.keep != Keep::None);

        let n_layers = self.layers.len();
        // The cache type (one per state) picks which of llama.cpp's attention graphs is
        // emulated.
        let flash = rows.first().is_some_and(|r| {
            (seqs[r.seq].state.caches.first()).is_some_and(|c| c.dtype() == compute::KvDtype::F16)
        });
        for (il, l) in self.layers.iter().enumerate() {
            let last = il + 1 == n_layers;
            let h = sized(&mut s.h, n * e);
            l.attn_norm.apply(&s.x[..n * e], h)?;
            // The block borrows the other buffers; `h` is moved out meanwhile (no copy).
            let h = std::mem::take(&mut s.h);
            let mut store = |t: usize, k: &[f32], v: &[f32]| -> Result<(), ModelError> {
                let r = rows[t];
                seqs[r.seq].state.caches[il].store(r.pos, k, v)?;
                Ok(())
            };
            let r = l
                .attn
                .project_and_store(file, &h[..n * e], rows, &mut store, s, flash);
            s.h = h;
            r?;
            if last && !any_logits {
                return Ok(());
            }
            let a = &l.attn;
            let (q_row, row) = a.row_lens();
            let att = sized(&mut s.att, n * row);
            let todo = || segs.iter().filter(|g| !(last && g.keep == Keep::None));
            if todo().count() <= 1 {
                for g in todo() {
                    let (r0, r1) = (g.row0, g.row0 + g.n);
                    let cache = &seqs[g.seq].state.caches[il];
                    let q = &s.q[r0 * q_row..r1 * q_row];
                    a.attend(cache, q, g.n, g.start_pos, &mut att[r0 * row..r1 * row])?;
                }
            } else {
                // Several sequences: one parallel region over all their (token, head) tasks
                // (each sequence's rows are computed exactly as alone).
                let mut calls = Vec::with_capacity(segs.len());
                let mut rest: &mut [f32] = att;
                let mut at = 0;
                for g in todo() {
                    let (r0, r1) = (g.row0, g.row0 + g.n);
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut((r0 - at) * row);
                    let (out, tail) = tail.split_at_mut((r1 - r0) * row);
                    rest = tail;
                    at = r1;
                    calls.push(compute::AttnCall {
                        params: a.params(),
                        cache: &seqs[g.seq].state.caches[il],
                        q: &s.q[r0 * q_row..r1 * q_row],
                        n_tokens: g.n,
                        start_pos: g.start_pos,
                        out,
                    });
                }
                compute::attention_many(&mut calls)?;
            }

            // Only the rows whose logits are wanted matter after the last attention: they
            // move to the front, in order.
            if last {
                let mut k = 0;
                for (from, cnt) in segs.iter().filter_map(Segment::kept) {
                    if from != k {
                        att.copy_within(from * row..(from + cnt) * row, k * row);
                        s.x.copy_within(from * e..(from + cnt) * e, k * e);
                        s.h.copy_within(from * e..(from + cnt) * e, k * e);
                    }
                    k += cnt;
                }
                n = k;
            }
            let att = &att[..n * row];
            let o = sized(&mut s.o, n * e);
            let ob = MlaOutBufs {
                tmp: &mut s.fused,
                heads: &mut s.v,
                qbuf: &mut s.qbuf,
            };
            a.output(file, att, n, o, ob)?;
            if let Some(norm) = &l.post_attn_norm {
                norm.apply_in_place(o)?;
            }
            let x = &mut s.x[..n * e];
            let f = sized(&mut s.f, n * e);
            let fb = FfnBufs {
                gate: &mut s.gate,
                up: &mut s.up,
                qbuf: &mut s.qbuf,
                moe: &mut s.moe,
            };
            match &l.residual {
                Residual::Sequential { ffn_norm } => {
                    compute::add_in_place(x, o);
                    let h = &mut s.h[..n * e];
                    ffn_norm.apply(x, h)?;
                    l.ffn.forward(file, h, n, f, fb)?;
                    if let Some(norm) = &l.post_ffn_norm {
                        norm.apply_in_place(f)?;
                    }
                    compute::add_in_place(x, f);
                }
                Residual::ParallelShared => {
                    l.ffn.forward(file, &s.h[..n * e], n, f, fb)?;
                    compute::add_in_place(o, f);
                    compute::add_in_place(x, o);
                }
                Residual::Parallel { ffn_norm } => {
                    let h = &mut s.h[..n * e];
                    ffn_norm.apply(x, h)?;
                    l.ffn.forward(file, h, n, f, fb)?;
                    compute::add_in_place(f, x);
                    x.copy_from_slice(f);
                    compute::add_in_place(x, o);
                }
            }
        }

        let h = sized(&mut s.h, n * e);
        self.output_norm.apply(&s.x[..n * e], h)?;
        // The kept rows are projected together wherever their logits rows follow each other
        // (always while decoding); a sequence whose wanted rows continue in a later
        // micro-batch splits the run.
        let mut run: Option<(usize, usize, usize)> = None; // (kept row, count, dest)
        let mut k = 0;
        for g in segs {
            let Some((_, cnt)) = g.kept() else { continue };
            run = match run {
                Some((k0, c, d)) if d + c == g.dest => Some((k0, c + cnt, d)),
                Some(done) => {
                    self.project_logits(file, h, done, logits, &mut s.qbuf)?;
                    Some((k, cnt, g.dest))
                }
                None => Some((k, cnt, g.dest)),
            };
            k += cnt;
        }
        if let Some(done) = run {
            self.project_logits(file, h, done, logits, &mut s.qbuf)?;
        }
        Ok(())
    }

    /// The vocabulary projection of `cnt` normalised rows of `h` from row `k0` into rows
    /// `dest..dest + cnt` of `logits`.
    fn project_logits(
        &self,
        file: &GgufFile,
        h: &[f32],
        (k0, cnt, dest): (usize, usize, usize),
        logits: &mut [f32],
        qbuf: &mut MatBuf,
    ) -> Result<(), ModelError> {
        let (e, nv) = (self.tok_embd.cols, self.output.rows);
        let out = &mut logits[dest * nv..(dest + cnt) * nv];
        qbuf.observe(&self.output.info.name, &h[k0 * e..(k0 + cnt) * e], cnt);
        let h = &h[k0 * e..(k0 + cnt) * e];
        compute::matmul(&self.output.view(file)?, h, cnt, out, qbuf)?;
        if let Some(b) = &self.output_bias {
            compute::add_bias(out, b);
        }
        if self.final_softcap != 0.0 {
            compute::softcap(out, self.final_softcap);
        }
        Ok(())
    }

    /// Looks up the embedding rows of `tokens` into `x` (scaled where the family says so).
    fn embed(&self, file: &GgufFile, tokens: &[u32], x: &mut [f32]) -> Result<(), ModelError> {
        let e = self.tok_embd.cols;
        let n_vocab = self.tok_embd.rows;
        let emb = self.tok_embd.view(file)?;
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= n_vocab {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the vocabulary of {n_vocab}"
                )));
            }
            compute::get_rows(&emb, id as usize, &mut x[t * e..(t + 1) * e])?;
        }
        if let Some(sc) = self.embd_scale {
            compute::scale(x, sc);
        }
        Ok(())
    }
}

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
use crate::weights::{Loader, Matrix};
use crate::{Config, State};

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

    fn matrices(&self) -> Vec<&gguf::TensorInfo> {
        match self {
            LayerAttn::Standard(a) => a.matrices(),
            LayerAttn::Latent(m) => m.matrices(),
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

    /// Projects `n` normalised rows `h`: the queries stay in `s.q`, keys and values go to
    /// `cache` at positions `start_pos..`.
    #[allow(clippy::too_many_arguments)]
    fn project_and_store(
        &self,
        file: &GgufFile,
        h: &[f32],
        n: usize,
        start_pos: usize,
        long_context: bool,
        cache: &mut KvCache,
        s: &mut Scratch,
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
                a.project_and_store(file, h, n, start_pos, long_context, cache, bufs)
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
                m.project_and_store(file, h, n, start_pos, cache, bufs)
            }
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
        match self {
            LayerAttn::Standard(a) => a.attend(cache, q, n, start_pos, out),
            LayerAttn::Latent(m) => m.attend(cache, q, n, start_pos, out),
        }
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

impl Layer {
    /// Gives the layer's weight matrices back to the kernel once a forward pass is done with
    /// them (lazy paging only).
    pub fn release(&self, file: &GgufFile) {
        if file.releases_pages() {
            let mut m = self.attn.matrices();
            m.extend(self.ffn.matrices());
            file.release_all(&m);
        }
    }
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

/// Which logits a micro-batch produces.
enum Outputs<'a> {
    /// None: an earlier micro-batch of a prompt (the last layer only stores its K/V).
    None,
    /// The last token's (`n_vocab`).
    Last(&'a mut [f32]),
    /// Every token's (`n * n_vocab`, row per token).
    All(&'a mut [f32]),
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
    qbuf: Vec<u8>,
    moe: MoeScratch,
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

    /// Runs `tokens` from `start_pos` in micro-batches of at most `state.ubatch` tokens, as
    /// llama.cpp does: a sliding-window ring only has room for one micro-batch beyond its
    /// window, and the batch kernels then see the same row counts as llama.cpp's. `logits`
    /// gets every row when `all_logits`, else the last token's.
    pub fn forward(
        &self,
        file: &GgufFile,
        state: &mut State,
        tokens: &[u32],
        start_pos: usize,
        all_logits: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let nv = self.output.rows;
        let n = tokens.len();
        // Every element is overwritten: resizing a reused buffer neither allocates nor
        // zeroes (a fresh 1 MiB vocabulary row per token would do both).
        logits.resize(if all_logits { n } else { 1 } * nv, 0.0);
        let ub = state.ubatch.max(1);
        for c0 in (0..n).step_by(ub) {
            let c1 = (c0 + ub).min(n);
            let out = if all_logits {
                Outputs::All(&mut logits[c0 * nv..c1 * nv])
            } else if c1 == n {
                Outputs::Last(&mut logits[..nv])
            } else {
                Outputs::None
            };
            self.forward_batch(file, state, &tokens[c0..c1], start_pos + c0, out)?;
        }
        Ok(())
    }

    /// One micro-batch, its logits going to `out`.
    fn forward_batch(
        &self,
        file: &GgufFile,
        state: &mut State,
        tokens: &[u32],
        start_pos: usize,
        out: Outputs,
    ) -> Result<(), ModelError> {
        let e = self.tok_embd.cols;
        let mut n = tokens.len();
        let all_logits = matches!(out, Outputs::All(_));
        let long_context = state.long_context;
        let State {
            caches, scratch: s, ..
        } = state;

        self.embed(file, tokens, sized(&mut s.x, n * e))?;

        let n_layers = self.layers.len();
        for (il, (l, cache)) in self.layers.iter().zip(caches.iter_mut()).enumerate() {
            let last = il + 1 == n_layers;
            let h = sized(&mut s.h, n * e);
            l.attn_norm.apply(&s.x[..n * e], h)?;
            // The block borrows the other buffers; `h` is moved out meanwhile (no copy).
            let h = std::mem::take(&mut s.h);
            let r =
                l.attn
                    .project_and_store(file, &h[..n * e], n, start_pos, long_context, cache, s);
            s.h = h;
            r?;
            if last && matches!(out, Outputs::None) {
                l.release(file);
                return Ok(());
            }
            let a = &l.attn;
            let (q_row, row) = a.row_lens();
            let att = sized(&mut s.att, n * row);
            a.attend(cache, &s.q[..n * q_row], n, start_pos, att)?;

            // Only the rows whose logits are wanted matter after the last attention.
            let mut att: &[f32] = att;
            if last && !all_logits && n > 1 {
                att = &att[(n - 1) * row..];
                s.x.copy_within((n - 1) * e..n * e, 0);
                s.h.copy_within((n - 1) * e..n * e, 0);
                n = 1;
            }
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
            l.release(file);
        }

        let (Outputs::All(logits) | Outputs::Last(logits)) = out else {
            return Ok(());
        };
        // Without all_logits only the last row is projected.
        let rows = if all_logits { n } else { 1 };
        let h = sized(&mut s.h, rows * e);
        self.output_norm.apply(&s.x[(n - rows) * e..n * e], h)?;
        self.output
            .matmul_paged(file, h, rows, logits, &mut s.qbuf)?;
        if let Some(b) = &self.output_bias {
            compute::add_bias(logits, b);
        }
        if self.final_softcap != 0.0 {
            compute::softcap(logits, self.final_softcap);
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
        if file.releases_pages() {
            for &id in tokens {
                self.tok_embd.release_row(file, id as usize);
            }
        }
        if let Some(sc) = self.embd_scale {
            compute::scale(x, sc);
        }
        Ok(())
    }
}

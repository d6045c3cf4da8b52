//! The pre-norm decoder-only transformer shared by the llama, qwen2/qwen3 and gemma3
//! families. Each family file fills in a [`Decoder`] (weights + switches); this file runs it.

use compute::{AttnParams, KvCache, Rope};
use gguf::GgufFile;

use crate::error::ModelError;
use crate::weights::Matrix;
use crate::State;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// silu(gate) * up
    SwiGlu,
    /// gelu(gate) * up, GELU through ggml's fp16 table
    GeGlu,
}

pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    /// Per-head RMSNorm of Q and K before rope (qwen3, gemma3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// RMSNorm of the attention output before the residual add (gemma2/3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
    pub post_ffn_norm: Option<Vec<f32>>,
    pub rope: Rope,
    pub attn: AttnParams,
    /// Multiplies Q after rope (gemma's f_attention_scale; 1 elsewhere).
    pub q_scale: f32,
}

pub(crate) struct Decoder {
    pub tok_embd: Matrix,
    /// Multiplies the looked-up embeddings (gemma: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    pub output: Matrix,
    pub act: Act,
    pub eps: f32,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub dk: usize,
    pub dv: usize,
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
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    rope: Vec<f32>,
    qbuf: Vec<u8>,
}

fn sized(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    buf.resize(n, 0.0);
    &mut buf[..n]
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
        let (nkv, dk, dv) = (self.n_head_kv, self.dk, self.dv);
        self.layers
            .iter()
            .map(|l| {
                let window = if swa_full { 0 } else { l.attn.window };
                KvCache::windowed(kv, max_seq_len, window, ubatch, nkv, dk, dv)
            })
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
        let n_embd = self.tok_embd.cols;
        let n_vocab = self.tok_embd.rows;
        let mut n = tokens.len();
        let (nh, nkv, dk, dv) = (self.n_head, self.n_head_kv, self.dk, self.dv);
        let all_logits = matches!(out, Outputs::All(_));
        let State {
            caches, scratch: s, ..
        } = state;

        let x = sized(&mut s.x, n * n_embd);
        let emb = self.tok_embd.view(file)?;
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= n_vocab {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the vocabulary of {n_vocab}"
                )));
            }
            compute::get_rows(&emb, id as usize, &mut x[t * n_embd..(t + 1) * n_embd])?;
        }
        if file.releases_pages() {
            for &id in tokens {
                self.tok_embd.release_row(file, id as usize);
            }
        }
        if let Some(sc) = self.embd_scale {
            compute::scale(x, sc);
        }

        let n_layers = self.layers.len();
        for (il, (l, cache)) in self.layers.iter().zip(caches.iter_mut()).enumerate() {
            let h = sized(&mut s.h, n * n_embd);
            compute::rms_norm(&s.x[..n * n_embd], Some(&l.attn_norm), self.eps, h)?;
            let q = sized(&mut s.q, n * nh * dk);
            let k = sized(&mut s.k, n * nkv * dk);
            let v = sized(&mut s.v, n * nkv * dv);
            let (wq, wk, wv) = (l.wq.view(file)?, l.wk.view(file)?, l.wv.view(file)?);
            // One parallel region for the three projections of the same input.
            let mut qkv = [(&wq, &mut *q), (&wk, &mut *k), (&wv, &mut *v)];
            compute::matmul_many(&mut qkv, h, n, &mut s.qbuf)?;
            for (buf, b) in [(&mut *q, &l.bq), (&mut *k, &l.bk), (&mut *v, &l.bv)] {
                if let Some(b) = b {
                    compute::add_bias(buf, b);
                }
            }
            if let Some(w) = &l.q_norm {
                compute::rms_norm_in_place(q, Some(w), self.eps)?;
            }
            if let Some(w) = &l.k_norm {
                compute::rms_norm_in_place(k, Some(w), self.eps)?;
            }
            let rc = sized(&mut s.rope, l.rope.n_rot);
            for t in 0..n {
                l.rope.fill_cache(start_pos + t, rc);
                l.rope
                    .apply_cached(&mut q[t * nh * dk..(t + 1) * nh * dk], nh, dk, rc);
                l.rope
                    .apply_cached_in_place(&mut k[t * nkv * dk..(t + 1) * nkv * dk], nkv, dk, rc);
            }
            if l.q_scale != 1.0 {
                compute::scale(q, l.q_scale);
            }
            for t in 0..n {
                cache.store(
                    start_pos + t,
                    &k[t * nkv * dk..(t + 1) * nkv * dk],
                    &v[t * nkv * dv..(t + 1) * nkv * dv],
                )?;
            }
            if il + 1 == n_layers && matches!(out, Outputs::None) {
                l.release(file);
                return Ok(());
            }
            let att = sized(&mut s.att, n * nh * dv);
            compute::attention(&l.attn, cache, q, n, start_pos, att)?;

            // Only the rows whose logits are wanted matter after the last attention.
            let mut att: &[f32] = att;
            if il + 1 == n_layers && !all_logits && n > 1 {
                att = &att[(n - 1) * nh * dv..];
                s.x.copy_within((n - 1) * n_embd..n * n_embd, 0);
                n = 1;
            }
            let o = sized(&mut s.o, n * n_embd);
            compute::matmul(&l.wo.view(file)?, att, n, o, &mut s.qbuf)?;
            if let Some(b) = &l.bo {
                compute::add_bias(o, b);
            }
            if let Some(w) = &l.post_attn_norm {
                compute::rms_norm_in_place(o, Some(w), self.eps)?;
            }
            let x = &mut s.x[..n * n_embd];
            compute::add_in_place(x, o);

            let h = sized(&mut s.h, n * n_embd);
            compute::rms_norm(x, Some(&l.ffn_norm), self.eps, h)?;
            let n_ff = l.gate.rows;
            let g = sized(&mut s.gate, n * n_ff);
            let u = sized(&mut s.up, n * n_ff);
            let (wg, wu) = (l.gate.view(file)?, l.up.view(file)?);
            compute::matmul_many(&mut [(&wg, &mut *g), (&wu, &mut *u)], h, n, &mut s.qbuf)?;
            match self.act {
                Act::SwiGlu => compute::swiglu(g, u),
                Act::GeGlu => compute::geglu(g, u),
            }
            let o = sized(&mut s.o, n * n_embd);
            compute::matmul(&l.down.view(file)?, g, n, o, &mut s.qbuf)?;
            if let Some(w) = &l.post_ffn_norm {
                compute::rms_norm_in_place(o, Some(w), self.eps)?;
            }
            compute::add_in_place(&mut s.x[..n * n_embd], o);
            l.release(file);
        }

        let (Outputs::All(logits) | Outputs::Last(logits)) = out else {
            return Ok(());
        };
        // Without all_logits only the last row is projected.
        let rows = if all_logits { n } else { 1 };
        let x = &s.x[(n - rows) * n_embd..n * n_embd];
        let h = sized(&mut s.h, rows * n_embd);
        compute::rms_norm(x, Some(&self.output_norm), self.eps, h)?;
        self.output
            .matmul_paged(file, h, rows, logits, &mut s.qbuf)?;
        Ok(())
    }
}

/// Which optional tensors a family's layers carry.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LayerOpts {
    /// Per-head Q/K RMSNorm (`attn_q_norm` / `attn_k_norm`) is required.
    pub qk_norm: bool,
    /// `post_attention_norm` / `post_ffw_norm` are required.
    pub post_norms: bool,
}

/// Loads `blk.{il}.*` with the standard llama.cpp tensor names. Q/K/V/O biases are loaded
/// when present.
pub(crate) fn load_layer(
    ld: &crate::weights::Loader,
    cfg: &crate::Config,
    il: usize,
    o: LayerOpts,
    rope: Rope,
    attn: AttnParams,
    q_scale: f32,
) -> Result<Layer, ModelError> {
    let p = |s: &str| format!("blk.{il}.{s}");
    let (e, nh, nkv, dk, dv, ff) = (
        cfg.n_embd,
        cfg.n_head,
        cfg.n_head_kv,
        cfg.head_dim_k,
        cfg.head_dim_v,
        cfg.n_ff,
    );
    let req = |name: &str, n: usize, on: bool| -> Result<Option<Vec<f32>>, ModelError> {
        if on {
            ld.vector(&p(name), n).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(Layer {
        attn_norm: ld.vector(&p("attn_norm.weight"), e)?,
        wq: ld.matrix(&p("attn_q.weight"), nh * dk, e)?,
        wk: ld.matrix(&p("attn_k.weight"), nkv * dk, e)?,
        wv: ld.matrix(&p("attn_v.weight"), nkv * dv, e)?,
        wo: ld.matrix(&p("attn_output.weight"), e, nh * dv)?,
        bq: ld.opt_vector(&p("attn_q.bias"), nh * dk)?,
        bk: ld.opt_vector(&p("attn_k.bias"), nkv * dk)?,
        bv: ld.opt_vector(&p("attn_v.bias"), nkv * dv)?,
        bo: ld.opt_vector(&p("attn_output.bias"), e)?,
        q_norm: req("attn_q_norm.weight", dk, o.qk_norm)?,
        k_norm: req("attn_k_norm.weight", dk, o.qk_norm)?,
        post_attn_norm: req("post_attention_norm.weight", e, o.post_norms)?,
        ffn_norm: ld.vector(&p("ffn_norm.weight"), e)?,
        gate: ld.matrix(&p("ffn_gate.weight"), ff, e)?,
        up: ld.matrix(&p("ffn_up.weight"), ff, e)?,
        down: ld.matrix(&p("ffn_down.weight"), e, ff)?,
        post_ffn_norm: req("post_ffw_norm.weight", e, o.post_norms)?,
        rope,
        attn,
        q_scale,
    })
}

/// Token embedding, final norm and output projection (tied to the embedding when the file
/// has no `output.weight`).
pub(crate) fn load_io(
    ld: &crate::weights::Loader,
    cfg: &crate::Config,
) -> Result<(Matrix, Vec<f32>, Matrix), ModelError> {
    let tok = ld.matrix("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
    let norm = ld.vector("output_norm.weight", cfg.n_embd)?;
    let out = ld
        .opt_matrix("output.weight", cfg.n_vocab, cfg.n_embd)?
        .unwrap_or_else(|| tok.clone());
    Ok((tok, norm, out))
}

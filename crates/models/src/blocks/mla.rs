//! Multi-head latent attention (DeepSeek-V2/V3) in the absorbed form of llama.cpp's
//! `deepseek2` graph:
//!
//! * Q: `attn_q` (`q_lora_rank` 0, V2-Lite) or `attn_q_a` -> RMSNorm `attn_q_a_norm` ->
//!   `attn_q_b`; per head `[q_nope | q_pe]`.
//! * `attn_kv_a_mqa(x)` = `[kv_cmpr | k_pe]`: the KV latent (RMSNorm `attn_kv_a_norm`) and
//!   one rope key part shared by every head.
//! * Rope (NORM mode) on `q_pe` and `k_pe` only.
//! * `q_nope` is absorbed into the latent space per head through `attn_k_b`
//!   (`{qk_nope, kv_lora_rank, n_head}`), so `Q = [q_nope · W_kb | q_pe]` attends to the
//!   cached rows `K = [kv_cmpr | k_pe]` as one shared KV head, the values being the rows'
//!   `kv_lora_rank` prefix ([`compute::KvCache::latent`]).
//! * Each head's latent output is decompressed by `attn_v_b` (`{kv_lora_rank, v_head,
//!   n_head}`), then `attn_output`.

use compute::{AttnParams, KvCache, KvDtype, Rope};
use gguf::{GgufFile, TensorInfo};

use super::attention::sized;
use super::norm::Norm;
use crate::error::ModelError;
use crate::weights::{Loader, Matrix, Stacked};
use crate::Config;

/// The dimensions of one MLA layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MlaDims {
    pub n_head: usize,
    /// Rank of the Q compression (0: one `attn_q` matrix).
    pub q_lora_rank: usize,
    pub kv_lora_rank: usize,
    /// Per-head query/key dimensions without and with rope (`key_length_mla` =
    /// `qk_nope + qk_rope`).
    pub qk_nope: usize,
    pub qk_rope: usize,
    /// Per-head value dimension (`value_length_mla`).
    pub v_head: usize,
}

impl MlaDims {
    /// Per-head query width before absorption (`key_length_mla`).
    pub fn q_head(&self) -> usize {
        self.qk_nope + self.qk_rope
    }

    /// Cached row per position, and the absorbed per-head query width: `kv_lora_rank +
    /// qk_rope`.
    pub fn cache_row(&self) -> usize {
        self.kv_lora_rank + self.qk_rope
    }
}

/// How Q is projected.
enum QProj {
    Full(Matrix),
    LowRank { a: Matrix, norm: Norm, b: Matrix },
}

pub(crate) struct Mla {
    q: QProj,
    kv_a: Matrix,
    kv_a_norm: Norm,
    k_b: Stacked,
    v_b: Stacked,
    wo: Matrix,
    rope: Rope,
    /// `scale` is llama.cpp's `kq_scale` (YaRN mscale² / sqrt(key_length_mla)).
    pub params: AttnParams,
    pub dims: MlaDims,
}

/// Buffers the block writes into (owned by the state's scratch).
pub(crate) struct MlaBufs<'a> {
    /// The absorbed queries, `n * n_head * cache_row`.
    pub q: &'a mut Vec<f32>,
    /// `attn_kv_a_mqa`'s output rows.
    pub kv: &'a mut Vec<f32>,
    /// The queries before absorption.
    pub q_raw: &'a mut Vec<f32>,
    /// Per-head gathers and the Q compression.
    pub tmp: &'a mut Vec<f32>,
    pub rope: &'a mut Vec<f32>,
    pub qbuf: &'a mut Vec<u8>,
}

/// Buffers of the output half.
pub(crate) struct MlaOutBufs<'a> {
    pub tmp: &'a mut Vec<f32>,
    /// The decompressed heads, `n * n_head * v_head`.
    pub heads: &'a mut Vec<f32>,
    pub qbuf: &'a mut Vec<u8>,
}

/// Runs stacked matrix `m` of `w` on column block `c0..c0 + w.cols` of each of the `n` rows
/// of `x` (row stride `xs`) and writes the result into column block `o0..o0 + w.rows` of
/// `out` (row stride `os`): one head of a per-head product.
#[allow(clippy::too_many_arguments)]
fn per_head(
    file: &GgufFile,
    w: &Stacked,
    m: usize,
    (x, xs, c0): (&[f32], usize, usize),
    n: usize,
    (out, os, o0): (&mut [f32], usize, usize),
    tmp: &mut Vec<f32>,
    qbuf: &mut Vec<u8>,
) -> Result<(), ModelError> {
    let (rows, cols) = (w.rows, w.cols);
    let t = sized(tmp, n * (cols + rows));
    let (input, res) = t.split_at_mut(n * cols);
    for r in 0..n {
        input[r * cols..][..cols].copy_from_slice(&x[r * xs + c0..][..cols]);
    }
    compute::matmul(&w.view(file, m)?, input, n, res, qbuf)?;
    for r in 0..n {
        out[r * os + o0..][..rows].copy_from_slice(&res[r * rows..][..rows]);
    }
    Ok(())
}

impl Mla {
    /// Loads `blk.{il}.attn_*` of an MLA layer.
    pub fn load(
        ld: &Loader,
        cfg: &Config,
        il: usize,
        dims: MlaDims,
        rope: Rope,
        params: AttnParams,
    ) -> Result<Self, ModelError> {
        let p = |s: &str| format!("blk.{il}.{s}");
        let e = cfg.n_embd;
        let d = dims;
        let rms = |name: &str, n: usize| -> Result<Norm, ModelError> {
            Ok(Norm::Rms {
                w: ld.vector(&p(name), n)?,
                eps: cfg.norm_eps,
            })
        };
        let q_rows = d.n_head * d.q_head();
        let q = if d.q_lora_rank > 0 {
            QProj::LowRank {
                a: ld.matrix(&p("attn_q_a.weight"), d.q_lora_rank, e)?,
                norm: rms("attn_q_a_norm.weight", d.q_lora_rank)?,
                b: ld.matrix(&p("attn_q_b.weight"), q_rows, d.q_lora_rank)?,
            }
        } else {
            QProj::Full(ld.matrix(&p("attn_q.weight"), q_rows, e)?)
        };
        if !ld.has(&p("attn_k_b.weight")) && ld.has(&p("attn_kv_b.weight")) {
            return Err(ModelError::Input(format!(
                "{}: DeepSeek files with the unsplit attn_kv_b (older conversions, run by \
                 llama.cpp as plain multi-head attention) are not supported; convert the \
                 model again to get attn_k_b / attn_v_b",
                p("attn_kv_b.weight")
            )));
        }
        Ok(Mla {
            q,
            kv_a: ld.matrix(&p("attn_kv_a_mqa.weight"), d.cache_row(), e)?,
            kv_a_norm: rms("attn_kv_a_norm.weight", d.kv_lora_rank)?,
            k_b: ld.stacked(&p("attn_k_b.weight"), d.n_head, d.kv_lora_rank, d.qk_nope)?,
            v_b: ld.stacked(&p("attn_v_b.weight"), d.n_head, d.v_head, d.kv_lora_rank)?,
            wo: ld.matrix(&p("attn_output.weight"), e, d.n_head * d.v_head)?,
            rope,
            params,
            dims,
        })
    }

    /// The weight matrices, for lazy paging.
    pub fn matrices(&self) -> Vec<&TensorInfo> {
        let mut m = match &self.q {
            QProj::Full(q) => vec![&q.info],
            QProj::LowRank { a, b, .. } => vec![&a.info, &b.info],
        };
        m.extend([
            &self.kv_a.info,
            &self.k_b.info,
            &self.v_b.info,
            &self.wo.info,
        ]);
        m
    }

    /// A latent cache: one `[kv_cmpr | k_pe]` row per position, the values its prefix.
    pub fn new_cache(&self, max_seq_len: usize, kv: KvDtype) -> KvCache {
        let d = &self.dims;
        KvCache::latent(kv, max_seq_len, d.cache_row(), d.kv_lora_rank)
    }

    /// Absorbed query row per token (`n_head * cache_row`).
    pub fn q_len(&self) -> usize {
        self.dims.n_head * self.dims.cache_row()
    }

    /// Attention output row per token, before decompression (`n_head * kv_lora_rank`).
    pub fn att_len(&self) -> usize {
        self.dims.n_head * self.dims.kv_lora_rank
    }

    /// Projects `n` normalised rows `h` to the absorbed queries (left in `b.q`) and stores
    /// `[kv_cmpr | k_pe]` in `cache` at positions `start_pos..`.
    pub fn project_and_store(
        &self,
        file: &GgufFile,
        h: &[f32],
        n: usize,
        start_pos: usize,
        cache: &mut KvCache,
        b: MlaBufs,
    ) -> Result<(), ModelError> {
        let d = &self.dims;
        let (nh, qh, row) = (d.n_head, d.q_head(), d.cache_row());
        let (lora, nope, rot) = (d.kv_lora_rank, d.qk_nope, d.qk_rope);
        let q_raw = sized(b.q_raw, n * nh * qh);
        let kv = sized(b.kv, n * row);
        let kv_a = self.kv_a.view(file)?;
        match &self.q {
            QProj::Full(wq) => {
                let wq = wq.view(file)?;
                compute::matmul_many(&mut [(&wq, &mut *q_raw), (&kv_a, &mut *kv)], h, n, b.qbuf)?;
            }
            QProj::LowRank { a, norm, b: wb } => {
                let qa = sized(b.tmp, n * d.q_lora_rank);
                let wa = a.view(file)?;
                compute::matmul_many(&mut [(&wa, &mut *qa), (&kv_a, &mut *kv)], h, n, b.qbuf)?;
                norm.apply_in_place(qa)?;
                compute::matmul(&wb.view(file)?, qa, n, q_raw, b.qbuf)?;
            }
        }
        // Rope on the rope parts only; both are views in llama.cpp's graph, roped into new
        // tensors.
        let rc = sized(b.rope, rot);
        for t in 0..n {
            let kt = &mut kv[t * row..][..row];
            self.kv_a_norm.apply_in_place(&mut kt[..lora])?;
            self.rope.fill_cache(start_pos + t, rc);
            self.rope.apply_cached(&mut kt[lora..], 1, rot, rc);
            for hh in 0..nh {
                let qp = &mut q_raw[(t * nh + hh) * qh + nope..][..rot];
                self.rope.apply_cached(qp, 1, rot, rc);
            }
        }
        // Q = [q_nope · W_kb | q_pe] per head.
        let q = sized(b.q, n * nh * row);
        for hh in 0..nh {
            let x = (&q_raw[..], nh * qh, hh * qh);
            let out = (&mut q[..], nh * row, hh * row);
            per_head(file, &self.k_b, hh, x, n, out, b.tmp, b.qbuf)?;
            for t in 0..n {
                q[(t * nh + hh) * row + lora..][..rot]
                    .copy_from_slice(&q_raw[(t * nh + hh) * qh + nope..][..rot]);
            }
        }
        for t in 0..n {
            cache.store(start_pos + t, &kv[t * row..][..row], &[])?;
        }
        Ok(())
    }

    /// Softmax attention of the `n` absorbed queries in `q` over the latent cache, into
    /// `out` (`n * n_head * kv_lora_rank`).
    pub fn attend(
        &self,
        cache: &KvCache,
        q: &[f32],
        n: usize,
        start_pos: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        compute::attention(&self.params, cache, q, n, start_pos, out)?;
        Ok(())
    }

    /// Decompresses each head's latent output through `attn_v_b`, then `attn_output`, for
    /// `n` rows of `att` into `out` (`n * n_embd`).
    pub fn output(
        &self,
        file: &GgufFile,
        att: &[f32],
        n: usize,
        out: &mut [f32],
        b: MlaOutBufs,
    ) -> Result<(), ModelError> {
        let d = &self.dims;
        let (nh, lora, vh) = (d.n_head, d.kv_lora_rank, d.v_head);
        let heads = sized(b.heads, n * nh * vh);
        for hh in 0..nh {
            let x = (att, nh * lora, hh * lora);
            let o = (&mut heads[..], nh * vh, hh * vh);
            per_head(file, &self.v_b, hh, x, n, o, b.tmp, b.qbuf)?;
        }
        compute::matmul(&self.wo.view(file)?, heads, n, out, b.qbuf)?;
        Ok(())
    }
}

//! Self-attention as llama.cpp's `build_qkv` + `build_attn` compute it: Q/K/V projections
//! (three matrices, or one fused `attn_qkv` whose output rows are [Q | K | V]), optional
//! biases, optional per-head Q/K RMSNorm, rope (partial rotary when `n_rot < head_dim`),
//! a Q pre-scale, then softmax attention over the layer's KV cache (GQA, logit soft-cap,
//! sliding window) and the output projection with its optional bias.

use compute::{AttnParams, Rope};
use gguf::GgufFile;

use super::mla::MlaDims;
use super::norm::Norm;
use crate::error::ModelError;
use crate::forward::{RowPos, StoreKv};
use crate::observe::MatBuf;
use crate::weights::{Loader, Matrix};
use crate::Config;

/// The Q/K/V projection weights.
// One per layer: the size difference between the variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
pub(crate) enum QkvWeights {
    Separate {
        q: Matrix,
        k: Matrix,
        v: Matrix,
        bq: Option<Vec<f32>>,
        bk: Option<Vec<f32>>,
        bv: Option<Vec<f32>>,
    },
    /// One matrix of `n_head*dk + 2*n_head_kv*dk` rows, run as one product (as llama.cpp
    /// does, so the kernel choice and the bits are the same) and then split per token.
    Fused { qkv: Matrix, bias: Option<Vec<f32>> },
}

/// What a family chooses for one layer's attention; the weights come from the file.
#[derive(Clone)]
pub(crate) struct AttnSpec {
    /// `attn_q_norm` / `attn_k_norm` (per-head RMSNorm before rope) are required.
    pub qk_norm: bool,
    /// Q/K/V and output biases are required (else loaded when present).
    pub biases: bool,
    /// The rope used when the context fits the trained one (or the only rope).
    pub rope: Rope,
    /// LongRoPE: the rope with the long factors, used when the state's context is larger
    /// than the original training context.
    pub rope_long: Option<Rope>,
    /// Multiplies Q after rope (ggml_scale in the graph; 1 when the softmax scale is used).
    pub q_scale: f32,
    pub params: AttnParams,
    /// Multi-head latent attention with these dimensions (DeepSeek) instead of Q/K/V
    /// heads; `rope` and `params` apply to it, the other fields do not.
    pub latent: Option<MlaDims>,
}

pub(crate) struct Attention {
    pub qkv: QkvWeights,
    pub wo: Matrix,
    pub bo: Option<Vec<f32>>,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub rope: Rope,
    pub rope_long: Option<Rope>,
    pub q_scale: f32,
    pub params: AttnParams,
    pub n_head_kv: usize,
    pub dk: usize,
    pub dv: usize,
}

/// Buffers the block writes into (owned by the state's scratch).
pub(crate) struct AttnBufs<'a> {
    pub q: &'a mut Vec<f32>,
    pub k: &'a mut Vec<f32>,
    pub v: &'a mut Vec<f32>,
    /// The fused projection's output before it is split.
    pub fused: &'a mut Vec<f32>,
    pub rope: &'a mut Vec<f32>,
    pub qbuf: &'a mut MatBuf,
}

pub(crate) fn sized(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    buf.resize(n, 0.0);
    &mut buf[..n]
}

impl Attention {
    /// Loads `blk.{il}.attn_*` with llama.cpp's tensor names: fused `attn_qkv` when the file
    /// has it, else `attn_q` / `attn_k` / `attn_v`.
    pub fn load(ld: &Loader, cfg: &Config, il: usize, spec: AttnSpec) -> Result<Self, ModelError> {
        let p = |s: &str| format!("blk.{il}.{s}");
        let (e, nh, nkv, dk, dv) = (
            cfg.n_embd,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim_k,
            cfg.head_dim_v,
        );
        let bias = |name: &str, n: usize| {
            if spec.biases {
                ld.vector(&p(name), n).map(Some)
            } else {
                ld.opt_vector(&p(name), n)
            }
        };
        let qkv = if ld.has(&p("attn_qkv.weight")) {
            let rows = nh * dk + nkv * dk + nkv * dv;
            QkvWeights::Fused {
                qkv: ld.matrix(&p("attn_qkv.weight"), rows, e)?,
                bias: bias("attn_qkv.bias", rows)?,
            }
        } else {
            QkvWeights::Separate {
                q: ld.matrix(&p("attn_q.weight"), nh * dk, e)?,
                k: ld.matrix(&p("attn_k.weight"), nkv * dk, e)?,
                v: ld.matrix(&p("attn_v.weight"), nkv * dv, e)?,
                bq: bias("attn_q.bias", nh * dk)?,
                bk: bias("attn_k.bias", nkv * dk)?,
                bv: bias("attn_v.bias", nkv * dv)?,
            }
        };
        let head_norm = |name: &str| -> Result<Option<Norm>, ModelError> {
            if !spec.qk_norm {
                return Ok(None);
            }
            Ok(Some(Norm::Rms {
                w: ld.vector(&p(name), dk)?,
                eps: cfg.norm_eps,
            }))
        };
        Ok(Attention {
            qkv,
            wo: ld.matrix(&p("attn_output.weight"), e, nh * dv)?,
            bo: bias("attn_output.bias", e)?,
            q_norm: head_norm("attn_q_norm.weight")?,
            k_norm: head_norm("attn_k_norm.weight")?,
            rope: spec.rope,
            rope_long: spec.rope_long,
            q_scale: spec.q_scale,
            params: spec.params,
            n_head_kv: nkv,
            dk,
            dv,
        })
    }

    /// Projects the normalised rows `h` (one per entry of `rows`) to Q (left in `b.q`,
    /// roped and scaled) and K/V (each row roped at its own position and handed to `store`).
    /// `flash`: the cache is attended as llama.cpp's flash-attention graph does (an f16
    /// cache); otherwise as its plain soft_max graph (an f32 cache).
    pub fn project_and_store(
        &self,
        file: &GgufFile,
        h: &[f32],
        rows: &[RowPos],
        store: &mut StoreKv,
        b: AttnBufs,
        flash: bool,
    ) -> Result<(), ModelError> {
        let n = rows.len();
        let (nh, nkv, dk, dv) = (self.params.n_head, self.n_head_kv, self.dk, self.dv);
        let (qd, kd, vd) = (nh * dk, nkv * dk, nkv * dv);
        let q = sized(b.q, n * qd);
        let k = sized(b.k, n * kd);
        let v = sized(b.v, n * vd);
        // In llama.cpp's soft_max graph the allocator ropes K in place when it is its own
        // tensor; a view into the fused output, and K in the flash-attention graph, are
        // roped into a new tensor. The two round adjacent-pair rotations differently
        // (checked against b11434's tensors, `Rope::apply_cached_at`).
        let separate = match &self.qkv {
            QkvWeights::Separate {
                q: wq,
                k: wk,
                v: wv,
                bq,
                bk,
                bv,
            } => {
                for w in [wq, wk, wv] {
                    b.qbuf.observe(&w.info.name, h, n);
                }
                let (wq, wk, wv) = (wq.view(file)?, wk.view(file)?, wv.view(file)?);
                // One parallel region for the three projections of the same input.
                let mut jobs = [(&wq, &mut *q), (&wk, &mut *k), (&wv, &mut *v)];
                compute::matmul_many(&mut jobs, h, n, b.qbuf)?;
                for (buf, bias) in [(&mut *q, bq), (&mut *k, bk), (&mut *v, bv)] {
                    if let Some(bias) = bias {
                        compute::add_bias(buf, bias);
                    }
                }
                true
            }
            QkvWeights::Fused { qkv, bias } => {
                let row = qd + kd + vd;
                let all = sized(b.fused, n * row);
                b.qbuf.observe(&qkv.info.name, h, n);
                compute::matmul(&qkv.view(file)?, h, n, all, b.qbuf)?;
                if let Some(bias) = bias {
                    compute::add_bias(all, bias);
                }
                for t in 0..n {
                    let r = &all[t * row..(t + 1) * row];
                    q[t * qd..(t + 1) * qd].copy_from_slice(&r[..qd]);
                    k[t * kd..(t + 1) * kd].copy_from_slice(&r[qd..qd + kd]);
                    v[t * vd..(t + 1) * vd].copy_from_slice(&r[qd + kd..]);
                }
                false
            }
        };
        if let Some(norm) = &self.q_norm {
            norm.apply_in_place(q)?;
        }
        if let Some(norm) = &self.k_norm {
            norm.apply_in_place(k)?;
        }
        for (t, r) in rows.iter().enumerate() {
            let rope = match (&self.rope_long, r.long_context) {
                (Some(long), true) => long,
                _ => &self.rope,
            };
            let rc = sized(b.rope, rope.n_rot);
            rope.fill_cache(r.pos, rc);
            rope.apply_cached(&mut q[t * qd..(t + 1) * qd], nh, dk, rc);
            let kt = &mut k[t * kd..(t + 1) * kd];
            if separate && !flash {
                rope.apply_cached_in_place(kt, nkv, dk, rc);
            } else {
                rope.apply_cached(kt, nkv, dk, rc);
            }
        }
        if self.q_scale != 1.0 {
            compute::scale(q, self.q_scale);
        }
        for t in 0..n {
            store(t, &k[t * kd..(t + 1) * kd], &v[t * vd..(t + 1) * vd])?;
        }
        Ok(())
    }

    /// Output projection (+ bias) of `n` attention rows into `out` (`n * n_embd`).
    pub fn output(
        &self,
        file: &GgufFile,
        att: &[f32],
        n: usize,
        out: &mut [f32],
        qbuf: &mut MatBuf,
    ) -> Result<(), ModelError> {
        qbuf.observe(&self.wo.info.name, att, n);
        compute::matmul(&self.wo.view(file)?, att, n, out, qbuf)?;
        if let Some(b) = &self.bo {
            compute::add_bias(out, b);
        }
        Ok(())
    }
}

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
//!
//! Older conversions have one `attn_kv_b` instead of `attn_k_b` / `attn_v_b` (and no
//! `key_length_mla`); llama.cpp runs those without absorption, and so do we: the latent is
//! decompressed into per-head `[k_nope | v]`, keys `[k_nope | k_pe]` and values are cached
//! per head, and ordinary multi-head attention follows.

use compute::{AttnParams, KvCache, KvDtype, Rope};
use gguf::GgufFile;

use super::attention::sized;
use super::norm::Norm;
use crate::error::ModelError;
use crate::forward::{RowPos, StoreKv};
use crate::observe::MatBuf;
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
    /// An older file with one `attn_kv_b`: run without absorption (see the module doc).
    pub decompressed: bool,
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
pub(crate) enum QProj {
    Full(Matrix),
    LowRank { a: Matrix, norm: Norm, b: Matrix },
}

/// How the latent becomes keys and values.
pub(crate) enum KvUp {
    /// Absorbed into the queries and the output (`attn_k_b`, `attn_v_b`): latent cache.
    Absorbed { k_b: Stacked, v_b: Stacked },
    /// Decompressed per head (`attn_kv_b`, rows `[k_nope | v]` per head): ordinary cache.
    Decompressed { kv_b: Matrix },
}

pub(crate) struct Mla {
    pub q: QProj,
    pub kv_a: Matrix,
    pub kv_a_norm: Norm,
    pub up: KvUp,
    pub wo: Matrix,
    pub rope: Rope,
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
    pub qbuf: &'a mut MatBuf,
}

/// Buffers of the output half.
pub(crate) struct MlaOutBufs<'a> {
    pub tmp: &'a mut Vec<f32>,
    /// The decompressed heads, `n * n_head * v_head`.
    pub heads: &'a mut Vec<f32>,
    pub qbuf: &'a mut MatBuf,
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
        let up = if d.decompressed {
            let rows = d.n_head * (d.qk_nope + d.v_head);
            KvUp::Decompressed {
                kv_b: ld.matrix(&p("attn_kv_b.weight"), rows, d.kv_lora_rank)?,
            }
        } else {
            KvUp::Absorbed {
                k_b: ld.stacked(&p("attn_k_b.weight"), d.n_head, d.kv_lora_rank, d.qk_nope)?,
                v_b: ld.stacked(&p("attn_v_b.weight"), d.n_head, d.v_head, d.kv_lora_rank)?,
            }
        };
        Ok(Mla {
            q,
            kv_a: ld.matrix(&p("attn_kv_a_mqa.weight"), d.cache_row(), e)?,
            kv_a_norm: rms("attn_kv_a_norm.weight", d.kv_lora_rank)?,
            up,
            wo: ld.matrix(&p("attn_output.weight"), e, d.n_head * d.v_head)?,
            rope,
            params,
            dims,
        })
    }

    /// A latent cache: one `[kv_cmpr | k_pe]` row per position, the values its prefix.
    /// (Decompressed: per-head keys `[k_nope | k_pe]` and values.)
    pub fn new_cache(&self, max_seq_len: usize, kv: KvDtype) -> KvCache {
        let d = &self.dims;
        match self.up {
            KvUp::Absorbed { .. } => {
                KvCache::latent(kv, max_seq_len, d.cache_row(), d.kv_lora_rank)
            }
            KvUp::Decompressed { .. } => {
                KvCache::new(kv, max_seq_len, d.n_head, d.q_head(), d.v_head)
            }
        }
    }

    /// Query row per token: absorbed (`n_head * cache_row`) or plain (`n_head * q_head`).
    pub fn q_len(&self) -> usize {
        match self.up {
            KvUp::Absorbed { .. } => self.dims.n_head * self.dims.cache_row(),
            KvUp::Decompressed { .. } => self.dims.n_head * self.dims.q_head(),
        }
    }

    /// Attention output row per token: latent (`n_head * kv_lora_rank`, decompressed
    /// afterwards) or the heads' values (`n_head * v_head`).
    pub fn att_len(&self) -> usize {
        match self.up {
            KvUp::Absorbed { .. } => self.dims.n_head * self.dims.kv_lora_rank,
            KvUp::Decompressed { .. } => self.dims.n_head * self.dims.v_head,
        }
    }

    /// Projects the normalised rows `h` (one per entry of `rows`) to the absorbed queries
    /// (left in `b.q`) and hands each row's `[kv_cmpr | k_pe]`, roped at its own position,
    /// to `store`.
    pub fn project_and_store(
        &self,
        file: &GgufFile,
        h: &[f32],
        rows: &[RowPos],
        store: &mut StoreKv,
        b: MlaBufs,
    ) -> Result<(), ModelError> {
        let n = rows.len();
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
            self.rope.fill_cache(rows[t].pos, rc);
            self.rope.apply_cached(&mut kt[lora..], 1, rot, rc);
            for hh in 0..nh {
                let qp = &mut q_raw[(t * nh + hh) * qh + nope..][..rot];
                self.rope.apply_cached(qp, 1, rot, rc);
            }
        }
        let k_b = match &self.up {
            KvUp::Absorbed { k_b, .. } => k_b,
            KvUp::Decompressed { kv_b } => {
                let bufs = (b.q, b.tmp, &mut **b.qbuf);
                return self.store_decompressed(file, kv_b, (q_raw, kv), n, store, bufs);
            }
        };
        // Q = [q_nope · W_kb | q_pe] per head.
        let q = sized(b.q, n * nh * row);
        for hh in 0..nh {
            let x = (&q_raw[..], nh * qh, hh * qh);
            let out = (&mut q[..], nh * row, hh * row);
            per_head(file, k_b, hh, x, n, out, b.tmp, b.qbuf)?;
            for t in 0..n {
                q[(t * nh + hh) * row + lora..][..rot]
                    .copy_from_slice(&q_raw[(t * nh + hh) * qh + nope..][..rot]);
            }
        }
        for t in 0..n {
            store(t, &kv[t * row..][..row], &[])?;
        }
        Ok(())
    }

    /// The older layout: `attn_kv_b` decompresses each position's latent into per-head
    /// `[k_nope | v]`; keys `[k_nope | k_pe]` (the rope part shared by every head) and values
    /// go to an ordinary cache, and the queries stay `[q_nope | q_pe]`.
    fn store_decompressed(
        &self,
        file: &GgufFile,
        kv_b: &Matrix,
        (q_raw, kv): (&[f32], &[f32]),
        n: usize,
        store: &mut StoreKv,
        (q, tmp, qbuf): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<u8>),
    ) -> Result<(), ModelError> {
        let d = &self.dims;
        let (nh, qh, row) = (d.n_head, d.q_head(), d.cache_row());
        let (lora, nope, vh) = (d.kv_lora_rank, d.qk_nope, d.v_head);
        let up = nope + vh;
        let t = sized(tmp, n * lora + n * nh * up + nh * (qh + vh));
        let (latent, rest) = t.split_at_mut(n * lora);
        let (dec, kvrow) = rest.split_at_mut(n * nh * up);
        for r in 0..n {
            latent[r * lora..][..lora].copy_from_slice(&kv[r * row..][..lora]);
        }
        compute::matmul(&kv_b.view(file)?, latent, n, dec, qbuf)?;
        let (krow, vrow) = kvrow.split_at_mut(nh * qh);
        for r in 0..n {
            let k_pe = &kv[r * row + lora..][..d.qk_rope];
            for hh in 0..nh {
                let src = &dec[(r * nh + hh) * up..][..up];
                let k = &mut krow[hh * qh..][..qh];
                k[..nope].copy_from_slice(&src[..nope]);
                k[nope..].copy_from_slice(k_pe);
                vrow[hh * vh..][..vh].copy_from_slice(&src[nope..]);
            }
            store(r, krow, vrow)?;
        }
        sized(q, n * nh * qh).copy_from_slice(&q_raw[..n * nh * qh]);
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
        let v_b = match &self.up {
            KvUp::Absorbed { v_b, .. } => v_b,
            KvUp::Decompressed { .. } => {
                // The attention already produced the heads' values.
                compute::matmul(&self.wo.view(file)?, att, n, out, b.qbuf)?;
                return Ok(());
            }
        };
        let heads = sized(b.heads, n * nh * vh);
        for hh in 0..nh {
            let x = (att, nh * lora, hh * lora);
            let o = (&mut heads[..], nh * vh, hh * vh);
            per_head(file, v_b, hh, x, n, o, b.tmp, b.qbuf)?;
        }
        compute::matmul(&self.wo.view(file)?, heads, n, out, b.qbuf)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The absorbed block against the plain form it rewrites: K and V decompressed per head
    //! (`k_nope = W_kb^T c`, `v = W_vb c`), ordinary softmax attention over
    //! `[k_nope | k_pe]`, in f64.

    use std::collections::HashSet;

    use compute::RopeMode;
    use gguf::{GgufFile, GgufWriter, Value};
    use quant::GgmlType;

    use super::*;
    use crate::config::{NormKind, YarnLogMul};

    const E: usize = 32;
    const EPS: f32 = 1e-6;

    fn rand(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    struct Weights {
        q_a: Vec<f32>,
        q_a_norm: Vec<f32>,
        /// attn_q_b, or attn_q when q_lora_rank is 0.
        q_b: Vec<f32>,
        kv_a: Vec<f32>,
        kv_a_norm: Vec<f32>,
        k_b: Vec<f32>,
        v_b: Vec<f32>,
        wo: Vec<f32>,
    }

    fn weights(d: &MlaDims) -> Weights {
        let (nh, qh, lora) = (d.n_head, d.q_head(), d.kv_lora_rank);
        let q_in = if d.q_lora_rank > 0 { d.q_lora_rank } else { E };
        let g = |n: usize, fan_in: usize, seed: u64| rand(n, seed, 1.7 / (fan_in as f32).sqrt());
        Weights {
            q_a: g(d.q_lora_rank * E, E, 1),
            q_a_norm: rand(d.q_lora_rank, 2, 0.1)
                .iter()
                .map(|x| 1.0 + x)
                .collect(),
            q_b: g(nh * qh * q_in, q_in, 3),
            kv_a: g(d.cache_row() * E, E, 4),
            kv_a_norm: rand(lora, 5, 0.1).iter().map(|x| 1.0 + x).collect(),
            k_b: g(nh * lora * d.qk_nope, d.qk_nope, 6),
            v_b: g(nh * d.v_head * lora, lora, 7),
            wo: g(E * nh * d.v_head, nh * d.v_head, 8),
        }
    }

    fn bytes(x: &[f32]) -> Vec<u8> {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// One layer's tensors in a GGUF, loaded as the block.
    fn block(d: &MlaDims, w: &Weights, tag: &str) -> (GgufFile, Mla, f32) {
        let mut g = GgufWriter::new();
        for (k, v) in [
            ("t.embedding_length", E),
            ("t.block_count", 1),
            ("t.attention.head_count", d.n_head),
            ("t.attention.head_count_kv", 1),
            ("t.attention.key_length", d.cache_row()),
            ("t.attention.value_length", d.kv_lora_rank),
            ("t.rope.dimension_count", d.qk_rope),
            ("t.context_length", 64),
            ("t.feed_forward_length", 64),
        ] {
            g.add(k, Value::U32(v as u32)).unwrap();
        }
        g.add("t.attention.layer_norm_rms_epsilon", Value::F32(EPS))
            .unwrap();
        let (nh, qh, lora) = (d.n_head, d.q_head(), d.kv_lora_rank);
        let mut t = |name: &str, dims: &[usize], x: &[f32]| {
            let dims: Vec<u64> = dims.iter().map(|&v| v as u64).collect();
            g.add_tensor(format!("blk.0.{name}"), &dims, GgmlType::F32, bytes(x))
                .unwrap();
        };
        if d.q_lora_rank > 0 {
            t("attn_q_a.weight", &[E, d.q_lora_rank], &w.q_a);
            t("attn_q_a_norm.weight", &[d.q_lora_rank], &w.q_a_norm);
            t("attn_q_b.weight", &[d.q_lora_rank, nh * qh], &w.q_b);
        } else {
            t("attn_q.weight", &[E, nh * qh], &w.q_b);
        }
        t("attn_kv_a_mqa.weight", &[E, d.cache_row()], &w.kv_a);
        t("attn_kv_a_norm.weight", &[lora], &w.kv_a_norm);
        t("attn_k_b.weight", &[d.qk_nope, lora, nh], &w.k_b);
        t("attn_v_b.weight", &[lora, d.v_head, nh], &w.v_b);
        t("attn_output.weight", &[nh * d.v_head, E], &w.wo);
        let path =
            std::env::temp_dir().join(format!("torchless-mla-{}-{tag}.gguf", std::process::id()));
        g.write_file(&path).unwrap();
        let file = GgufFile::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let cfg =
            Config::common(file.metadata(), "t", 8, NormKind::Rms, YarnLogMul::Ignored).unwrap();
        let rope = cfg.rope.rope(RopeMode::Norm, d.qk_rope, 10000.0);
        let scale = 0.7 / (qh as f32).sqrt();
        let params = AttnParams {
            n_head: nh,
            scale,
            softcap: 0.0,
            window: 0,
        };
        let none = HashSet::new();
        let ld = Loader {
            file: &file,
            interleaved: &none,
        };
        let mla = Mla::load(&ld, &cfg, 0, *d, rope, params).unwrap();
        (file, mla, scale)
    }

    /// y = W x for a row-major `rows x cols` W, in f64.
    fn mv(w: &[f32], x: &[f64], rows: usize) -> Vec<f64> {
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| w[r * cols + c] as f64 * x[c]).sum())
            .collect()
    }

    fn rms(x: &[f64], w: &[f32]) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let k = 1.0 / (ms + EPS as f64).sqrt();
        x.iter().zip(w).map(|(v, g)| v * k * *g as f64).collect()
    }

    /// NORM-mode rope (adjacent pairs), no scaling.
    fn rope64(x: &mut [f64], pos: usize) {
        let n = x.len();
        for i in 0..n / 2 {
            let th = pos as f64 * 10000f64.powf(-2.0 * i as f64 / n as f64);
            let (s, c) = th.sin_cos();
            let (a, b) = (x[2 * i], x[2 * i + 1]);
            x[2 * i] = a * c - b * s;
            x[2 * i + 1] = a * s + b * c;
        }
    }

    /// The plain (decompressed) layer output for every position of `xs`.
    fn reference(d: &MlaDims, w: &Weights, xs: &[Vec<f64>], scale: f64) -> Vec<Vec<f64>> {
        let (nh, qh, lora, nope, vh) = (d.n_head, d.q_head(), d.kv_lora_rank, d.qk_nope, d.v_head);
        let mut qs = Vec::new();
        let mut ks = Vec::new(); // [pos][head] = [k_nope | k_pe]
        let mut vs = Vec::new(); // [pos][head]
        for (pos, x) in xs.iter().enumerate() {
            let q = if d.q_lora_rank > 0 {
                let a = rms(&mv(&w.q_a, x, d.q_lora_rank), &w.q_a_norm);
                mv(&w.q_b, &a, nh * qh)
            } else {
                mv(&w.q_b, x, nh * qh)
            };
            let kv = mv(&w.kv_a, x, d.cache_row());
            let c = rms(&kv[..lora], &w.kv_a_norm);
            let mut k_pe = kv[lora..].to_vec();
            rope64(&mut k_pe, pos);
            let mut qp = Vec::new();
            let mut kp = Vec::new();
            let mut vp = Vec::new();
            for h in 0..nh {
                let mut qh_ = q[h * qh..][..qh].to_vec();
                rope64(&mut qh_[nope..], pos);
                qp.push(qh_);
                // k_nope[i] = sum_l W_kb[h][l][i] c[l]; v[j] = sum_l W_vb[h][j][l] c[l]
                let kb = &w.k_b[h * lora * nope..][..lora * nope];
                let mut k: Vec<f64> = (0..nope)
                    .map(|i| (0..lora).map(|l| kb[l * nope + i] as f64 * c[l]).sum())
                    .collect();
                k.extend(&k_pe);
                kp.push(k);
                vp.push(mv(&w.v_b[h * vh * lora..][..vh * lora], &c, vh));
            }
            qs.push(qp);
            ks.push(kp);
            vs.push(vp);
        }
        (0..xs.len())
            .map(|t| {
                let mut heads = Vec::new();
                for h in 0..nh {
                    let s: Vec<f64> = (0..=t)
                        .map(|j| {
                            qs[t][h]
                                .iter()
                                .zip(&ks[j][h])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let mut o = vec![0f64; vh];
                    for (j, p) in e.iter().enumerate() {
                        for (a, b) in o.iter_mut().zip(&vs[j][h]) {
                            *a += p / z * b;
                        }
                    }
                    heads.extend(o);
                }
                mv(&w.wo, &heads, E)
            })
            .collect()
    }

    #[test]
    fn absorbed_mla_equals_the_decompressed_attention() {
        for (q_lora_rank, dtype, tol) in [
            (16, KvDtype::F32, 1e-4),
            (0, KvDtype::F32, 1e-4),
            (16, KvDtype::F16, 2e-2),
        ] {
            let d = MlaDims {
                n_head: 3,
                q_lora_rank,
                kv_lora_rank: 12,
                qk_nope: 8,
                qk_rope: 4,
                v_head: 6,
                decompressed: false,
            };
            let w = weights(&d);
            let tag = format!("{q_lora_rank}-{dtype:?}");
            let (file, mla, scale) = block(&d, &w, &tag);
            let n = 9;
            let x = rand(n * E, 99, 1.0);
            let xs: Vec<Vec<f64>> = x
                .chunks(E)
                .map(|r| r.iter().map(|&v| v as f64).collect())
                .collect();
            let want = reference(&d, &w, &xs, scale as f64);
            // A prompt of 6 in one batch, then 3 single-token steps.
            let mut cache = mla.new_cache(16, dtype);
            let mut got = vec![0f32; n * E];
            let mut bufs: [Vec<f32>; 7] = Default::default();
            let mut qbuf = MatBuf::default();
            for (p0, p1) in [(0, 6), (6, 7), (7, 8), (8, 9)] {
                let m = p1 - p0;
                let [q, kv, q_raw, tmp, rope, att, heads] = &mut bufs;
                let b = MlaBufs {
                    q,
                    kv,
                    q_raw,
                    tmp,
                    rope,
                    qbuf: &mut qbuf,
                };
                let rows: Vec<RowPos> = (p0..p1)
                    .map(|pos| RowPos {
                        seq: 0,
                        pos,
                        long_context: false,
                    })
                    .collect();
                let mut store = |t: usize, k: &[f32], v: &[f32]| {
                    cache.store(p0 + t, k, v).map_err(ModelError::from)
                };
                mla.project_and_store(&file, &x[p0 * E..p1 * E], &rows, &mut store, b)
                    .unwrap();
                let att = sized(att, m * mla.att_len());
                compute::attention(&mla.params, &cache, &q[..m * mla.q_len()], m, p0, att).unwrap();
                let ob = MlaOutBufs {
                    tmp,
                    heads,
                    qbuf: &mut qbuf,
                };
                mla.output(&file, att, m, &mut got[p0 * E..p1 * E], ob)
                    .unwrap();
            }
            assert_eq!(
                cache.max_bytes(),
                16 * d.cache_row() * if dtype == KvDtype::F32 { 4 } else { 2 }
            );
            let mut worst = 0f64;
            for (t, row) in want.iter().enumerate() {
                for (a, b) in got[t * E..][..E].iter().zip(row) {
                    worst = worst.max((*a as f64 - b).abs());
                }
            }
            assert!(worst < tol, "{tag}: {worst}");
            eprintln!("{tag}: max |absorbed - decompressed| = {worst:e}");
        }
    }
}

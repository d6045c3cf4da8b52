//! Multi-head latent attention on a backend, as `blocks/mla.rs` computes it. Absorbed (the
//! usual layout): Q (one matrix, or `attn_q_a` -> RMSNorm -> `attn_q_b`), the `[kv_cmpr |
//! k_pe]` row of `attn_kv_a_mqa` with its latent normalised and `k_pe` roped, `q_pe` roped,
//! `q_nope` absorbed per head through `attn_k_b` ([`Backend::matmul_id`] over the stack, one
//! matrix id per head), attention over a latent cache ([`Backend::latent_cache`]: one row
//! per position, the values its prefix), each head's latent output decompressed by
//! `attn_v_b`, then `attn_output`. Older files with one `attn_kv_b` decompress the latent
//! into per-head keys `[k_nope | k_pe]` and values over an ordinary cache instead.

use compute::backend::{Backend, RopeSpec, Span};
use compute::AttnParams;

use super::run::{BackendWork, Seg};
use super::{BNorm, BackendModel, BackendSeq, Builder, Dims};
use crate::blocks::mla::{KvUp, Mla, MlaDims, QProj};
use crate::ModelError;

enum BQ {
    Full(usize),
    LowRank { a: usize, norm: BNorm, b: usize },
}

enum BUp {
    /// Stacks of `n_head` matrices.
    Absorbed {
        k_b: usize,
        v_b: usize,
    },
    Decompressed {
        kv_b: usize,
    },
}

/// An MLA block's weights on a backend.
pub(super) struct BMla {
    q: BQ,
    kv_a: usize,
    kv_a_norm: BNorm,
    up: BUp,
    wo: usize,
    pair: usize,
    mode: compute::RopeMode,
    params: AttnParams,
    d: MlaDims,
}

/// Uploads `m`'s matrices; the widths of the work rows it needs.
pub(super) fn build<B: Backend>(bd: &mut Builder<B>, m: &Mla) -> Result<(BMla, Dims), ModelError> {
    let d = m.dims;
    let q = match &m.q {
        QProj::Full(q) => BQ::Full(bd.matrix(q)?),
        QProj::LowRank { a, norm, b } => BQ::LowRank {
            a: bd.matrix(a)?,
            norm: bd.norm(norm),
            b: bd.matrix(b)?,
        },
    };
    let up = match &m.up {
        KvUp::Absorbed { k_b, v_b } => BUp::Absorbed {
            k_b: bd.stack(&k_b.info, k_b.n, k_b.rows, k_b.cols)?,
            v_b: bd.stack(&v_b.info, v_b.n, v_b.rows, v_b.cols)?,
        },
        KvUp::Decompressed { kv_b } => BUp::Decompressed {
            kv_b: bd.matrix(kv_b)?,
        },
    };
    let (nh, qh, vh) = (d.n_head, d.q_head(), d.v_head);
    let absorbed = matches!(up, BUp::Absorbed { .. });
    let dims = Dims {
        // Absorbed queries, or the per-head keys of the decompressed form.
        q: nh * if absorbed { d.cache_row() } else { qh },
        k: d.cache_row(),
        v: nh * vh,
        fused: nh * qh,
        fused_pad: d.qk_nope,
        att: nh * if absorbed { d.kv_lora_rank } else { vh },
        rot: d.qk_rope,
        lat: d.kv_lora_rank,
        qa: d.q_lora_rank,
        dec: if absorbed { 0 } else { nh * (d.qk_nope + vh) },
        heads: nh * vh,
        n_head_ids: if absorbed { nh } else { 0 },
        ..Dims::default()
    };
    let mla = BMla {
        q,
        kv_a: bd.matrix(&m.kv_a)?,
        kv_a_norm: bd.norm(&m.kv_a_norm),
        up,
        wo: bd.matrix(&m.wo)?,
        pair: bd.pair(&m.rope, None),
        mode: m.rope.mode,
        params: m.params,
        d,
    };
    Ok((mla, dims))
}

impl BMla {
    /// The layer's cache for up to `capacity` positions.
    pub(super) fn cache<B: Backend>(
        &self,
        b: &B,
        capacity: usize,
        ubatch: usize,
    ) -> Result<B::Cache, ModelError> {
        let d = &self.d;
        Ok(match self.up {
            BUp::Absorbed { .. } => b.latent_cache(capacity, d.cache_row(), d.kv_lora_rank)?,
            BUp::Decompressed { .. } => {
                b.kv_cache(capacity, 0, ubatch, d.n_head, d.q_head(), d.v_head)?
            }
        })
    }
}

impl<B: Backend> BackendModel<B> {
    /// `s.o = mla(s.h)` for the `n` rows of `segs`, each sequence's keys into its layer
    /// `il` cache.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn latent(
        &self,
        b: &B,
        seqs: &mut [BackendSeq<B>],
        segs: &[Seg],
        s: &BackendWork<B>,
        m: &BMla,
        il: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        let (e, d, w) = (self.n_embd, &m.d, &self.matrices);
        let (nh, qh, row) = (d.n_head, d.q_head(), d.cache_row());
        let (lora, nope, rot, vh) = (d.kv_lora_rank, d.qk_nope, d.qk_rope, d.v_head);
        let h = Span::rows(&s.h, e);
        // The queries before absorption, `[q_nope | q_pe]` per head.
        let q_raw = Span::rows(&s.fused, nh * qh);
        match &m.q {
            BQ::Full(wq) => b.matmul(&w[*wq], h, n, q_raw)?,
            BQ::LowRank { a, norm, b: wb } => {
                let ql = d.q_lora_rank;
                b.matmul(&w[*a], h, n, Span::rows(&s.ext.qa, ql))?;
                super::run::norm(b, self, norm, &s.ext.qa, ql, n, &s.ext.qa)?;
                b.matmul(&w[*wb], Span::rows(&s.ext.qa, ql), n, q_raw)?;
            }
        }
        let kv = Span::rows(&s.k, row);
        b.matmul(&w[m.kv_a], h, n, kv)?;
        // The latent normalised through a contiguous copy (norms take whole rows).
        let lat = Span::rows(&s.ext.lat, lora);
        b.copy(kv, lat, lora, n)?;
        super::run::norm(b, self, &m.kv_a_norm, &s.ext.lat, lora, n, &s.ext.lat)?;
        b.copy(lat, kv, lora, n)?;
        let table = Span::rows(&s.table, self.dims.rot).at(m.pair * s.rows * self.dims.rot);
        let spec = |n_heads, head_dim| RopeSpec {
            n_heads,
            head_dim,
            n_rot: rot,
            mode: m.mode,
            in_place: false,
        };
        b.rope(kv.at(lora), n, table, spec(1, rot))?;
        // Each head's q_pe: heads of `qh` whose first `rot` values are roped, seen from
        // `nope` on (the last one ends `nope` past the row: `fused_pad`).
        b.rope(q_raw.at(nope), n, table, spec(nh, qh))?;
        let (q, qrow, att, arow) = match &m.up {
            BUp::Absorbed { k_b, .. } => {
                // Q = [q_nope · W_kb | q_pe] per head: rows of the batch's heads.
                let heads_in = Span::rows(&s.fused, qh);
                let q = Span::rows(&s.q, row);
                b.matmul_id(&w[*k_b], &s.ext.head_ids, heads_in, 1, n * nh, q)?;
                b.copy(heads_in.at(nope), q.at(lora), rot, n * nh)?;
                (Span::rows(&s.q, nh * row), nh * row, &s.att, nh * lora)
            }
            BUp::Decompressed { kv_b } => {
                let up = nope + vh;
                let dec = Span::rows(&s.ext.dec, up);
                b.matmul(&w[*kv_b], lat, n, Span::rows(&s.ext.dec, nh * up))?;
                // Keys [k_nope | k_pe] per head into `s.q`, values into `s.v`.
                let keys = Span::rows(&s.q, qh);
                b.copy(dec, keys, nope, n * nh)?;
                for hh in 0..nh {
                    let dst = Span::rows(&s.q, nh * qh).at(hh * qh + nope);
                    b.copy(kv.at(lora), dst, rot, n)?;
                }
                b.copy(dec.at(nope), Span::rows(&s.v, vh), vh, n * nh)?;
                (q_raw, nh * qh, &s.att, nh * vh)
            }
        };
        let absorbed = matches!(m.up, BUp::Absorbed { .. });
        for g in segs {
            let cache = &seqs[g.seq].state.caches[il];
            let (k, v) = if absorbed {
                (kv.at(g.row0 * row), kv.at(g.row0 * row))
            } else {
                (
                    Span::rows(&s.q, nh * qh).at(g.row0 * nh * qh),
                    Span::rows(&s.v, nh * vh).at(g.row0 * nh * vh),
                )
            };
            b.kv_store(cache, k, v, g.n, g.start_pos)?;
            let out = Span::rows(att, arow).at(g.row0 * arow);
            b.attention(cache, &m.params, q.at(g.row0 * qrow), g.n, g.start_pos, out)?;
        }
        let o = Span::rows(&s.o, e);
        match &m.up {
            BUp::Absorbed { v_b, .. } => {
                let heads = Span::rows(&s.ext.heads, vh);
                b.matmul_id(
                    &w[*v_b],
                    &s.ext.head_ids,
                    Span::rows(att, lora),
                    1,
                    n * nh,
                    heads,
                )?;
                b.matmul(&w[m.wo], Span::rows(&s.ext.heads, nh * vh), n, o)?;
            }
            BUp::Decompressed { .. } => b.matmul(&w[m.wo], Span::rows(att, arow), n, o)?,
        }
        Ok(())
    }
}

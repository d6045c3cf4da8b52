//! The decoder run through [`compute::backend::Backend`] (a GPU, for one): the same blocks
//! as `forward.rs`, in the same order, with every operation a backend call over tensors the
//! backend owns. Covers the dense families (separate or fused QKV, biases,
//! per-head Q/K norms, every rope variant through host-made tables, GQA, sliding windows,
//! soft-caps, SwiGLU/GeGLU (separate or fused gate/up), plain GELU MLPs, the three residual
//! layouts and Gemma's post-norms), mixtures of experts (`experts.rs`: routed on the backend,
//! experts multiplied in their GGUF types) and multi-head latent attention (`latent.rs`,
//! absorbed or decompressed). A model may run in two parts on two backends ([`SplitModel`]:
//! the first layers on a GPU, the rest on the CPU), the hidden state copied between them.
//!
//! The CPU forward pass stays `forward.rs` (bit-exact with llama.cpp); this one trades those
//! bits for the backend's own arithmetic (the GPU multiplies f32 activations, not quantized
//! ones), so it agrees with it to a tolerance.

use std::collections::HashMap;

use compute::backend::{Backend, GluKind};
use compute::{AttnParams, Rope};

use crate::blocks::attention::{Attention, QkvWeights};
use crate::blocks::ffn::{Ffn, Glu};
use crate::blocks::norm::Norm;
use crate::forward::{LayerAttn, Residual};
use crate::weights::Matrix;
use crate::{Model, ModelError};

struct BNorm {
    layer: bool,
    w: usize,
    b: Option<usize>,
    eps: f32,
}

enum BQkv {
    Separate {
        q: usize,
        k: usize,
        v: usize,
        b: [Option<usize>; 3],
    },
    Fused {
        qkv: usize,
        bias: Option<usize>,
    },
}

struct BAttn {
    qkv: BQkv,
    wo: usize,
    bo: Option<usize>,
    q_norm: Option<BNorm>,
    k_norm: Option<BNorm>,
    /// Rope table: the rope, or with LongRoPE its short and long factor sets (each row
    /// takes the set its sequence's context calls for).
    pair: usize,
    n_rot: usize,
    mode: compute::RopeMode,
    /// Multiplies Q after rope (separate projections; a fused one has it folded into the
    /// softmax scale, the same product up to rounding).
    q_scale: f32,
    params: AttnParams,
    n_kv: usize,
    dk: usize,
    dv: usize,
}

/// A layer's attention block.
enum BLayerAttn {
    Standard(BAttn),
    Latent(latent::BMla),
}

impl BLayerAttn {
    /// The sliding window of its queries (0 = all positions).
    fn window(&self) -> usize {
        match self {
            BLayerAttn::Standard(a) => a.params.window,
            BLayerAttn::Latent(_) => 0,
        }
    }
}

enum BFfn {
    /// `gate: None`: the first `ff` of each `up` row.
    Gated {
        gate: Option<usize>,
        up: usize,
        down: usize,
        ff: usize,
        glu: GluKind,
    },
    Plain {
        up: usize,
        up_b: Option<usize>,
        down: usize,
        down_b: Option<usize>,
        ff: usize,
    },
    Moe(Box<experts::BMoe>),
}

enum BResidual {
    Sequential(BNorm),
    ParallelShared,
    Parallel(BNorm),
}

struct BLayer {
    attn_norm: BNorm,
    attn: BLayerAttn,
    post_attn_norm: Option<BNorm>,
    residual: BResidual,
    ffn: BFfn,
    post_ffn_norm: Option<BNorm>,
}

/// A model's weights on a backend: matrices in their GGUF types, norms and biases as f32.
pub struct BackendModel<B: Backend> {
    matrices: Vec<B::Weights>,
    vectors: Vec<B::Tensor>,
    ropes: Vec<Rope>,
    /// Distinct (rope, long-context rope) of the layers: one host-made table each.
    pairs: Vec<(usize, Option<usize>)>,
    /// Row widths the work buffers need (largest over the layers).
    dims: Dims,
    layers: Vec<BLayer>,
    /// The token embedding: on the part that runs the first layer (its input is otherwise
    /// the hidden state of the part before).
    tok_embd: Option<usize>,
    /// The output norm and projection: on the part that runs the last layer (which otherwise
    /// returns its hidden state).
    output: Option<(usize, BNorm)>,
    output_bias: Option<usize>,
    embd_scale: Option<f32>,
    final_softcap: f32,
    n_embd: usize,
    /// Rows of the token embedding (valid token ids).
    n_tokens: usize,
    n_vocab: usize,
    n_ctx_orig: usize,
}

/// Widths of the work buffers' rows.
#[derive(Clone, Copy, Default)]
struct Dims {
    q: usize,
    k: usize,
    v: usize,
    fused: usize,
    /// Floats past the last row of `fused` (latent attention ropes each head's rope part as
    /// a head of its own, the last one ending that far past its row).
    fused_pad: usize,
    att: usize,
    ff: usize,
    rot: usize,
    /// Latent attention: the normalised latent, the Q compression, the decompressed
    /// `[k_nope | v]` heads, the heads' values, and the query heads (one matrix id each).
    lat: usize,
    qa: usize,
    dec: usize,
    heads: usize,
    n_head_ids: usize,
    /// Experts: router logits, experts per token, one expert's hidden units, and whether a
    /// shared expert needs its own output row.
    n_expert: usize,
    n_used: usize,
    ff_exp: usize,
    shared: bool,
}

impl Dims {
    fn max(self, o: Dims) -> Dims {
        Dims {
            q: self.q.max(o.q),
            k: self.k.max(o.k),
            v: self.v.max(o.v),
            fused: self.fused.max(o.fused),
            fused_pad: self.fused_pad.max(o.fused_pad),
            att: self.att.max(o.att),
            ff: self.ff.max(o.ff),
            rot: self.rot.max(o.rot),
            lat: self.lat.max(o.lat),
            qa: self.qa.max(o.qa),
            dec: self.dec.max(o.dec),
            heads: self.heads.max(o.heads),
            n_head_ids: self.n_head_ids.max(o.n_head_ids),
            n_expert: self.n_expert.max(o.n_expert),
            n_used: self.n_used.max(o.n_used),
            ff_exp: self.ff_exp.max(o.ff_exp),
            shared: self.shared || o.shared,
        }
    }
}

struct Builder<'a, B: Backend> {
    b: &'a B,
    file: &'a gguf::GgufFile,
    /// The same file, for backends that borrow the weights where they lie.
    store: std::sync::Arc<dyn quant::WeightStore>,
    matrices: Vec<B::Weights>,
    by_name: HashMap<String, usize>,
    vectors: Vec<B::Tensor>,
    ropes: Vec<Rope>,
    rope_keys: Vec<String>,
    pairs: Vec<(usize, Option<usize>)>,
}

fn unsupported(what: &str) -> ModelError {
    ModelError::Input(format!("{what} is not supported by this backend yet"))
}

impl<B: Backend> Builder<'_, B> {
    fn matrix(&mut self, m: &Matrix) -> Result<usize, ModelError> {
        if let Some(&i) = self.by_name.get(&m.info.name) {
            return Ok(i);
        }
        let data = self.file.tensor_data(&m.info);
        let w = if m.interleaved {
            // Rows interleaved for the CPU's kernels (eager loading): back to the file's
            // layout, which every backend reads.
            let mut plain = data.to_vec();
            let ok = match m.info.ty {
                quant::GgmlType::Q4_K => quant::q4_kx16::deinterleave(&mut plain, m.rows, m.cols),
                _ => quant::q4_0x8::deinterleave(&mut plain, m.rows, m.cols),
            };
            if !ok {
                return Err(unsupported("an interleaved matrix of this shape"));
            }
            self.b.upload_weights(m.info.ty, m.rows, m.cols, &plain)?
        } else {
            let at = self.file.store_range(&m.info);
            (self.b).share_weights(m.info.ty, m.rows, m.cols, &self.store, at)?
        };
        self.matrices.push(w);
        self.by_name
            .insert(m.info.name.clone(), self.matrices.len() - 1);
        Ok(self.matrices.len() - 1)
    }

    fn vector(&mut self, v: &[f32]) -> usize {
        self.vectors.push(self.b.upload(v));
        self.vectors.len() - 1
    }

    fn opt_vector(&mut self, v: &Option<Vec<f32>>) -> Option<usize> {
        v.as_deref().map(|v| self.vector(v))
    }

    fn norm(&mut self, n: &Norm) -> BNorm {
        match n {
            Norm::Rms { w, eps } => BNorm {
                layer: false,
                w: self.vector(w),
                b: None,
                eps: *eps,
            },
            Norm::Layer { w, b, eps } => BNorm {
                layer: true,
                w: self.vector(w),
                b: self.opt_vector(b),
                eps: *eps,
            },
        }
    }

    /// `count` stacked matrices of `rows x cols` (a 3-D tensor), uploaded once.
    fn stack(
        &mut self,
        info: &gguf::TensorInfo,
        count: usize,
        rows: usize,
        cols: usize,
    ) -> Result<usize, ModelError> {
        if let Some(&i) = self.by_name.get(&info.name) {
            return Ok(i);
        }
        let at = self.file.store_range(info);
        let w = (self.b).share_stack(info.ty, count, rows, cols, &self.store, at)?;
        self.matrices.push(w);
        self.by_name
            .insert(info.name.clone(), self.matrices.len() - 1);
        Ok(self.matrices.len() - 1)
    }

    /// The table of a rope and its long-context variant, shared by the layers that use the
    /// same.
    fn pair(&mut self, r: &Rope, long: Option<&Rope>) -> usize {
        let pair = (self.rope(r), long.map(|l| self.rope(l)));
        match self.pairs.iter().position(|p| *p == pair) {
            Some(i) => i,
            None => {
                self.pairs.push(pair);
                self.pairs.len() - 1
            }
        }
    }

    /// A standard attention block and the buffer widths it needs.
    fn attention(&mut self, a: &Attention) -> Result<(BAttn, Dims), ModelError> {
        let qkv = match &a.qkv {
            QkvWeights::Separate {
                q,
                k,
                v,
                bq,
                bk,
                bv,
            } => BQkv::Separate {
                q: self.matrix(q)?,
                k: self.matrix(k)?,
                v: self.matrix(v)?,
                b: [
                    self.opt_vector(bq),
                    self.opt_vector(bk),
                    self.opt_vector(bv),
                ],
            },
            QkvWeights::Fused { qkv, bias } => {
                if a.q_norm.is_some() || a.k_norm.is_some() {
                    return Err(unsupported("a fused QKV projection with Q/K norms"));
                }
                BQkv::Fused {
                    qkv: self.matrix(qkv)?,
                    bias: self.opt_vector(bias),
                }
            }
        };
        let mut params = a.params;
        let fused = matches!(qkv, BQkv::Fused { .. });
        if fused {
            params.scale *= a.q_scale;
        }
        let attn = BAttn {
            qkv,
            wo: self.matrix(&a.wo)?,
            bo: self.opt_vector(&a.bo),
            q_norm: a.q_norm.as_ref().map(|n| self.norm(n)),
            k_norm: a.k_norm.as_ref().map(|n| self.norm(n)),
            pair: self.pair(&a.rope, a.rope_long.as_ref()),
            n_rot: a.rope.n_rot,
            mode: a.rope.mode,
            q_scale: if fused { 1.0 } else { a.q_scale },
            params,
            n_kv: a.n_head_kv,
            dk: a.dk,
            dv: a.dv,
        };
        let (q, k, v) = (
            attn.params.n_head * attn.dk,
            attn.n_kv * attn.dk,
            attn.n_kv * attn.dv,
        );
        let dims = Dims {
            q,
            k,
            v,
            fused: q + k + v,
            att: attn.params.n_head * attn.dv,
            rot: attn.n_rot,
            ..Dims::default()
        };
        Ok((attn, dims))
    }

    /// A dense FFN, or a mixture of experts, and the buffer widths it needs.
    fn ffn(&mut self, f: &Ffn) -> Result<(BFfn, Dims), ModelError> {
        let ffn = match f {
            Ffn::Gated {
                gate,
                up,
                down,
                glu,
            } => BFfn::Gated {
                gate: gate.as_ref().map(|g| self.matrix(g)).transpose()?,
                up: self.matrix(up)?,
                down: self.matrix(down)?,
                ff: down.cols,
                glu: match glu {
                    Glu::SwiGlu => GluKind::SwiGlu,
                    Glu::GeGlu => GluKind::GeGlu,
                },
            },
            Ffn::Plain {
                up,
                up_b,
                down,
                down_b,
            } => BFfn::Plain {
                up: self.matrix(up)?,
                up_b: self.opt_vector(up_b),
                down: self.matrix(down)?,
                down_b: self.opt_vector(down_b),
                ff: up.rows,
            },
            Ffn::Moe(m) => return experts::build(self, m),
        };
        let ff = match ffn {
            BFfn::Gated { ff, gate: None, .. } => 2 * ff,
            BFfn::Gated { ff, .. } | BFfn::Plain { ff, .. } => ff,
            BFfn::Moe(_) => 0,
        };
        Ok((
            ffn,
            Dims {
                ff,
                ..Dims::default()
            },
        ))
    }

    /// Layers with the same rope share one table.
    fn rope(&mut self, r: &Rope) -> usize {
        let key = format!("{r:?}");
        if let Some(i) = self.rope_keys.iter().position(|k| *k == key) {
            return i;
        }
        self.rope_keys.push(key);
        self.ropes.push(r.clone());
        self.ropes.len() - 1
    }
}

impl<B: Backend> BackendModel<B> {
    /// Uploads `model`'s weights to `backend`.
    pub fn load(model: &Model, backend: &B) -> Result<Self, ModelError> {
        Self::load_layers(model, backend, 0..model.decoder.layers.len())
    }

    /// Uploads the layers `layers` of `model` to `backend`, with the token embedding when
    /// they start at the first layer and the output norm and projection when they end at
    /// the last: one part of a model split between backends ([`SplitModel`]).
    pub fn load_layers(
        model: &Model,
        backend: &B,
        range: std::ops::Range<usize>,
    ) -> Result<Self, ModelError> {
        let d = &model.decoder;
        let n_layer = d.layers.len();
        if range.start >= range.end || range.end > n_layer {
            return Err(ModelError::Input(format!(
                "layers {}..{} of a model with {n_layer}",
                range.start, range.end
            )));
        }
        let (first, last) = (range.start == 0, range.end == n_layer);
        let mut bd = Builder {
            b: backend,
            file: &model.file,
            store: model.file.clone(),
            matrices: Vec::new(),
            by_name: HashMap::new(),
            vectors: Vec::new(),
            ropes: Vec::new(),
            rope_keys: Vec::new(),
            pairs: Vec::new(),
        };
        let mut dims = Dims::default();
        let mut layers = Vec::with_capacity(d.layers.len());
        for l in &d.layers[range] {
            let (attn, ad) = match &l.attn {
                LayerAttn::Standard(a) => {
                    let (a, ad) = bd.attention(a)?;
                    (BLayerAttn::Standard(a), ad)
                }
                LayerAttn::Latent(m) => {
                    let (m, ad) = latent::build(&mut bd, m)?;
                    (BLayerAttn::Latent(m), ad)
                }
            };
            if ad.n_head_ids > 0 && dims.n_head_ids > 0 && ad.n_head_ids != dims.n_head_ids {
                return Err(unsupported(
                    "latent attention with different head counts per layer",
                ));
            }
            let (ffn, fd) = bd.ffn(&l.ffn)?;
            let residual = match &l.residual {
                Residual::Sequential { ffn_norm } => BResidual::Sequential(bd.norm(ffn_norm)),
                Residual::ParallelShared => BResidual::ParallelShared,
                Residual::Parallel { ffn_norm } => BResidual::Parallel(bd.norm(ffn_norm)),
            };
            dims = dims.max(ad).max(fd);
            layers.push(BLayer {
                attn_norm: bd.norm(&l.attn_norm),
                attn,
                post_attn_norm: l.post_attn_norm.as_ref().map(|n| bd.norm(n)),
                residual,
                ffn,
                post_ffn_norm: l.post_ffn_norm.as_ref().map(|n| bd.norm(n)),
            });
        }
        let tok_embd = if first {
            Some(bd.matrix(&d.tok_embd)?)
        } else {
            None
        };
        let (output, output_bias) = if last {
            let w = bd.matrix(&d.output)?;
            (
                Some((w, bd.norm(&d.output_norm))),
                bd.opt_vector(&d.output_bias),
            )
        } else {
            (None, None)
        };
        Ok(BackendModel {
            matrices: bd.matrices,
            vectors: bd.vectors,
            ropes: bd.ropes,
            pairs: bd.pairs,
            dims,
            layers,
            tok_embd,
            output,
            output_bias,
            embd_scale: d.embd_scale,
            final_softcap: d.final_softcap,
            n_embd: d.tok_embd.cols,
            n_tokens: d.tok_embd.rows,
            n_vocab: d.output.rows,
            n_ctx_orig: model.config.rope.n_ctx_orig,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }
}

mod experts;
mod latent;
mod run;
mod split;
pub use run::{BackendSeq, BackendState, BackendWork};
pub use split::{SplitModel, SplitSeq, SplitState, SplitWork};

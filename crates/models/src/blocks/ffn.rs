//! Feed-forward blocks as llama.cpp's `build_ffn` computes them:
//! * gated (`LLM_FFN_PAR`): `down(act(gate(x)) * up(x))` with SwiGLU or GeGLU, the gate and
//!   up projections either two matrices or one fused `[gate | up]` matrix (Phi-3's
//!   `ffn_up` of `2 * n_ff` rows, `LLM_FFN_SWIGLU`);
//! * plain (`LLM_FFN_SEQ`): `down(gelu(up(x) + b_up)) + b_down` (Phi-2, GPT-NeoX).

use gguf::GgufFile;

use super::attention::sized;
use super::moe::{Moe, MoeScratch, MoeSpec};
use crate::error::ModelError;
use crate::observe::MatBuf;
use crate::weights::{Loader, Matrix};
use crate::Config;

/// The gated activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Glu {
    /// silu(gate) * up
    SwiGlu,
    /// gelu(gate) * up, GELU through ggml's fp16 table
    GeGlu,
}

/// How a family's FFN is laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FfnKind {
    /// `ffn_gate` + `ffn_up` (or one fused `ffn_up` of 2 * n_ff rows when the file has no
    /// `ffn_gate`) + `ffn_down`.
    Gated(Glu),
    /// `ffn_up` (+ bias) -> GELU -> `ffn_down` (+ bias).
    PlainGelu,
    /// Routed experts (+ shared experts).
    Moe(MoeSpec),
}

pub(crate) enum Ffn {
    Gated {
        /// `None`: the gate is the first half of `up`'s rows.
        gate: Option<Matrix>,
        up: Matrix,
        down: Matrix,
        glu: Glu,
    },
    Plain {
        up: Matrix,
        up_b: Option<Vec<f32>>,
        down: Matrix,
        down_b: Option<Vec<f32>>,
    },
    Moe(Box<Moe>),
}

/// Buffers the block writes into (owned by the state's scratch).
pub(crate) struct FfnBufs<'a> {
    pub gate: &'a mut Vec<f32>,
    pub up: &'a mut Vec<f32>,
    pub qbuf: &'a mut MatBuf,
    pub moe: &'a mut MoeScratch,
}

impl Ffn {
    /// Loads `blk.{il}.ffn_*` for a dense layer of `cfg.n_ff` hidden units.
    pub fn load(ld: &Loader, cfg: &Config, il: usize, kind: FfnKind) -> Result<Self, ModelError> {
        let p = |s: &str| format!("blk.{il}.{s}");
        let (e, ff) = (cfg.n_embd, cfg.n_ff);
        Ok(match kind {
            FfnKind::Gated(glu) => {
                Ffn::load_gated(ld, cfg, il, ["ffn_gate", "ffn_up", "ffn_down"], ff, glu)?
            }
            FfnKind::Moe(spec) => Ffn::Moe(Box::new(Moe::load(ld, cfg, il, spec)?)),
            FfnKind::PlainGelu => Ffn::Plain {
                up: ld.matrix(&p("ffn_up.weight"), ff, e)?,
                up_b: ld.opt_vector(&p("ffn_up.bias"), ff)?,
                down: ld.matrix(&p("ffn_down.weight"), e, ff)?,
                down_b: ld.opt_vector(&p("ffn_down.bias"), e)?,
            },
        })
    }

    /// A gated FFN of `ff` hidden units from `blk.{il}.{gate,up,down}.weight`; without the
    /// gate tensor, `up` holds `[gate | up]` (2 * ff rows).
    pub fn load_gated(
        ld: &Loader,
        cfg: &Config,
        il: usize,
        [gate, up, down]: [&str; 3],
        ff: usize,
        glu: Glu,
    ) -> Result<Self, ModelError> {
        let p = |s: &str| format!("blk.{il}.{s}.weight");
        let e = cfg.n_embd;
        let gate = ld.opt_matrix(&p(gate), ff, e)?;
        let up_rows = if gate.is_some() { ff } else { 2 * ff };
        Ok(Ffn::Gated {
            up: ld.matrix(&p(up), up_rows, e)?,
            gate,
            down: ld.matrix(&p(down), e, ff)?,
            glu,
        })
    }

    /// `out = ffn(h)` for `n` rows (`out`: `n * n_embd`).
    pub fn forward(
        &self,
        file: &GgufFile,
        h: &[f32],
        n: usize,
        out: &mut [f32],
        b: FfnBufs,
    ) -> Result<(), ModelError> {
        match self {
            Ffn::Gated {
                gate,
                up,
                down,
                glu,
            } => {
                let ff = down.cols;
                let g = sized(b.gate, n * ff);
                match gate {
                    Some(wg) => {
                        let u = sized(b.up, n * ff);
                        b.qbuf.observe(&wg.info.name, h, n);
                        b.qbuf.observe(&up.info.name, h, n);
                        let (wg, wu) = (wg.view(file)?, up.view(file)?);
                        compute::matmul_many(&mut [(&wg, &mut *g), (&wu, &mut *u)], h, n, b.qbuf)?;
                    }
                    None => {
                        // One product over [gate | up], then the halves of each row apart.
                        let both = sized(b.up, n * 2 * ff);
                        b.qbuf.observe(&up.info.name, h, n);
                        compute::matmul(&up.view(file)?, h, n, both, b.qbuf)?;
                        for t in 0..n {
                            g[t * ff..(t + 1) * ff].copy_from_slice(&both[2 * t * ff..][..ff]);
                        }
                        for t in 0..n {
                            both.copy_within((2 * t + 1) * ff..(2 * t + 2) * ff, t * ff);
                        }
                    }
                }
                let u = &b.up[..n * ff];
                match glu {
                    Glu::SwiGlu => compute::swiglu(g, u),
                    Glu::GeGlu => compute::geglu(g, u),
                }
                b.qbuf.observe(&down.info.name, g, n);
                compute::matmul(&down.view(file)?, g, n, out, b.qbuf)?;
            }
            Ffn::Plain {
                up,
                up_b,
                down,
                down_b,
            } => {
                let ff = up.rows;
                let u = sized(b.up, n * ff);
                b.qbuf.observe(&up.info.name, h, n);
                compute::matmul(&up.view(file)?, h, n, u, b.qbuf)?;
                if let Some(bias) = up_b {
                    compute::add_bias(u, bias);
                }
                compute::gelu(u);
                b.qbuf.observe(&down.info.name, u, n);
                compute::matmul(&down.view(file)?, u, n, out, b.qbuf)?;
                if let Some(bias) = down_b {
                    compute::add_bias(out, bias);
                }
            }
            Ffn::Moe(m) => m.forward(file, h, n, out, b)?,
        }
        Ok(())
    }
}

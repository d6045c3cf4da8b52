//! The pieces decoder layers are made of, each in llama.cpp's arithmetic: [`norm`] (RMSNorm,
//! LayerNorm), [`attention`] (projections, rope, soft-cap, sliding window, output),
//! [`mla`] (DeepSeek's multi-head latent attention) and [`ffn`] (gated GLU or plain GELU
//! MLP). Families compose them (`families/`); the forward pass (`forward.rs`) runs them in
//! the layer's residual layout.

pub(crate) mod attention;
pub(crate) mod ffn;
pub(crate) mod mla;
pub(crate) mod moe;
pub(crate) mod norm;

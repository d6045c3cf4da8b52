//! The backend seam: the operations a decoder layer's blocks need, over tensors that live
//! wherever the backend keeps them (host memory, device memory).
//!
//! A backend queues operations in call order and runs them at its own pace: a GPU backend
//! records them into one submission and runs it when the host next reads or writes a tensor
//! ([`Backend::read`], [`Backend::write`]) or calls [`Backend::flush`]; a CPU backend may
//! run each call at once. Callers therefore only touch tensor contents through
//! `write`/`read`, and an operation's output must not be one of its inputs unless the
//! operation says it works in place.
//!
//! Rows of a tensor are addressed by [`Span`] (first element, stride between rows), so a
//! fused QKV output is read as three spans without copies. Rope takes a host-made table of
//! `(cos, sin)` per pair and row ([`crate::Rope::fill_cache`]), so every rope variant
//! (linear, YaRN, llama3 factors, LongRoPE) is the same operation on every backend.
//!
//! Today `models`' CPU forward pass calls `compute`'s functions directly (bit-exact with
//! llama.cpp); `models::backend` runs the decoder (dense, mixture-of-experts and latent
//! attention layers) through this trait, [`Cpu`] implements it with those same functions
//! (giving `models`' logits bit for bit), and the GPU backend (`torchless-gpu`) implements
//! it on a device.
//!
//! Experts and per-head matrices are stacks ([`Backend::upload_stack`]) multiplied row by row
//! through ids ([`Backend::matmul_id`]) that the router ([`Backend::route`]) writes on the
//! backend itself, so a MoE layer needs no read-back to the host.

use std::sync::Arc;

use quant::{GgmlType, StoreRange, WeightStore};

use crate::ComputeError;

mod cpu;
pub use cpu::{Cpu, CpuTensor, CpuWeights};

/// Rows of a tensor: the first starts at element `off`, each next one `stride` later.
pub struct Span<'a, T> {
    pub t: &'a T,
    pub off: usize,
    pub stride: usize,
}

impl<T> Clone for Span<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Span<'_, T> {}

impl<'a, T> Span<'a, T> {
    /// Rows of `stride` elements from the start of `t`.
    pub fn rows(t: &'a T, stride: usize) -> Self {
        Span { t, off: 0, stride }
    }

    /// The same rows, `off` elements further.
    pub fn at(self, off: usize) -> Self {
        Span {
            off: self.off + off,
            ..self
        }
    }
}

/// Rope settings of one call (the angles come in the table).
#[derive(Clone, Copy, Debug)]
pub struct RopeSpec {
    pub n_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub mode: crate::RopeMode,
    /// ggml ropes this tensor in place (K from its own projection) when attention is not
    /// flash attention (the CPU backend's f32 cache), which changes the CPU's adjacent-pair
    /// rounding ([`crate::Rope::apply_cached_in_place`]); backends
    /// whose arithmetic does not depend on it ignore it.
    pub in_place: bool,
}

/// The gated activation of an FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluKind {
    SwiGlu,
    GeGlu,
}

/// What a backend must provide for a decoder's forward pass.
pub trait Backend {
    /// f32 elements (activations) or u32 token ids.
    type Tensor;
    /// A weight matrix kept in its GGUF encoding.
    type Weights;
    /// One layer's keys and values, `slots` positions per KV head, position `p` in slot
    /// `p % slots`.
    type Cache;

    /// A short description for logs (adapter name, thread count).
    fn describe(&self) -> String;

    /// Most elements one operation may take in a tensor (a GPU's storage binding limit).
    fn max_elements(&self) -> usize {
        usize::MAX
    }

    // Memory.
    fn tensor(&self, len: usize) -> Self::Tensor;
    fn upload(&self, data: &[f32]) -> Self::Tensor;
    /// Overwrites the first elements of `t` once the operations queued so far have run.
    fn write(&self, t: &Self::Tensor, data: &[f32]) -> Result<(), ComputeError>;
    fn write_ids(&self, t: &Self::Tensor, ids: &[u32]) -> Result<(), ComputeError>;
    /// Runs what is queued and returns the first `n` elements of `t`.
    fn read(&self, t: &Self::Tensor, n: usize) -> Result<Vec<f32>, ComputeError>;
    /// A `rows x cols` matrix of type `ty` from its raw bytes.
    fn upload_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<Self::Weights, ComputeError>;
    /// `count` matrices of `rows x cols` of type `ty` stacked in one tensor (a 3-D GGUF
    /// tensor: a MoE layer's experts, latent attention's per-head matrices), each kept in
    /// its encoding, for [`Backend::matmul_id`].
    fn upload_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<Self::Weights, ComputeError>;
    /// [`Backend::upload_weights`] of bytes in a store the model shares (its GGUF file): a
    /// backend whose operations can read host memory keeps borrowing them, paged in on
    /// demand when the store pages them; the default copies them, as a device must.
    fn share_weights(
        &self,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        store: &Arc<dyn WeightStore>,
        at: StoreRange,
    ) -> Result<Self::Weights, ComputeError> {
        self.upload_weights(ty, rows, cols, store.bytes(at))
    }
    /// [`Backend::upload_stack`] of bytes in a shared store (see [`Backend::share_weights`]).
    fn share_stack(
        &self,
        ty: GgmlType,
        count: usize,
        rows: usize,
        cols: usize,
        store: &Arc<dyn WeightStore>,
        at: StoreRange,
    ) -> Result<Self::Weights, ComputeError> {
        self.upload_stack(ty, count, rows, cols, store.bytes(at))
    }
    /// The cache of a layer whose queries see the last `window` positions (0 = all), for up
    /// to `capacity` positions fed in micro-batches of at most `ubatch`: a ring of
    /// [`crate::windowed_slots`] slots.
    #[allow(clippy::too_many_arguments)]
    fn kv_cache(
        &self,
        capacity: usize,
        window: usize,
        ubatch: usize,
        n_kv: usize,
        dk: usize,
        dv: usize,
    ) -> Result<Self::Cache, ComputeError>;
    /// The cache of a latent attention layer (MLA) for up to `capacity` positions: one key
    /// row of `dk` per position, shared by every query head, whose first `dv` elements are
    /// the values ([`crate::KvCache::latent`]; [`Backend::kv_store`] ignores its values).
    fn latent_cache(
        &self,
        capacity: usize,
        dk: usize,
        dv: usize,
    ) -> Result<Self::Cache, ComputeError>;
    /// Starts what is queued.
    fn flush(&self) -> Result<(), ComputeError>;
    /// Slots of `cache` (positions it holds at once).
    fn cache_slots(&self, cache: &Self::Cache) -> usize;

    // Operations, queued in call order.
    /// Row `ids[t]` of `w`, decoded, into row `t` of `y`, for `n` ids.
    fn get_rows(
        &self,
        w: &Self::Weights,
        ids: &Self::Tensor,
        n: usize,
        y: Span<Self::Tensor>,
    ) -> Result<(), ComputeError>;
    /// `y[t][r] = sum_k w[r][k] * x[t][k]` for `n` rows.
    fn matmul(
        &self,
        w: &Self::Weights,
        x: Span<Self::Tensor>,
        n: usize,
        y: Span<Self::Tensor>,
    ) -> Result<(), ComputeError>;
    /// `y[i][r] = sum_c w[ids[i]][r][c] * x[i / per][c]` for `n` rows `i`: each row by the
    /// matrix of a stack ([`Backend::upload_stack`]) its id (a u32, as token ids) names;
    /// with `per = k` every input row feeds the `k` rows after it (a token's experts).
    #[allow(clippy::too_many_arguments)]
    fn matmul_id(
        &self,
        w: &Self::Weights,
        ids: &Self::Tensor,
        x: Span<Self::Tensor>,
        per: usize,
        n: usize,
        y: Span<Self::Tensor>,
    ) -> Result<(), ComputeError>;
    /// A MoE router over `n` rows of `r.n_expert` logits (`logits` may be overwritten):
    /// row `t`'s chosen experts into `ids[t * n_used..]` (u32) and their weights into
    /// `weights[t * n_used..]`, as [`crate::moe::route`] chooses them (`bias` is the
    /// selection bias).
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        r: &crate::moe::Router,
        logits: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        n: usize,
        ids: &Self::Tensor,
        weights: &Self::Tensor,
    ) -> Result<(), ComputeError>;
    /// `y[t] = sum_{j < k} w[t * k + j] * x[t * k + j]` for `n` rows of `width`, each
    /// product rounded and summed in order of `j` (a token's weighted experts, llama.cpp's
    /// chain of adds). `y` must not overlap `x`.
    #[allow(clippy::too_many_arguments)]
    fn weighted_sum(
        &self,
        x: Span<Self::Tensor>,
        w: &Self::Tensor,
        k: usize,
        width: usize,
        n: usize,
        y: Span<Self::Tensor>,
    ) -> Result<(), ComputeError>;
    /// `y = 1 / (1 + exp(-y))` over `n` elements.
    fn sigmoid(&self, y: &Self::Tensor, n: usize) -> Result<(), ComputeError>;
    /// Copies `n` rows of `width` from `x` to `y` (which must not overlap).
    fn copy(
        &self,
        x: Span<Self::Tensor>,
        y: Span<Self::Tensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError>;
    /// `y[i] += bias[i % bias_len]` over the first `n` elements (in place).
    fn add_bias(&self, y: &Self::Tensor, bias: &Self::Tensor, n: usize)
        -> Result<(), ComputeError>;
    /// `y = norm(x)` over `rows` rows of `n` (RMSNorm, or LayerNorm when `layer`), times
    /// `w` and plus `b` when given. `x` and `y` may be the same tensor (in place).
    #[allow(clippy::too_many_arguments)]
    fn norm(
        &self,
        layer: bool,
        x: &Self::Tensor,
        w: Option<&Self::Tensor>,
        b: Option<&Self::Tensor>,
        eps: f32,
        n: usize,
        rows: usize,
        y: &Self::Tensor,
    ) -> Result<(), ComputeError>;
    /// Rotates `n` rows of heads in place with `table` (`n_rot` floats per row, read from
    /// `table.off`; its stride is ignored).
    fn rope(
        &self,
        y: Span<Self::Tensor>,
        n: usize,
        table: Span<Self::Tensor>,
        spec: RopeSpec,
    ) -> Result<(), ComputeError>;
    /// `gate = act(gate) * up` for `n` rows of `width` (in place in `gate`).
    fn glu(
        &self,
        kind: GluKind,
        gate: Span<Self::Tensor>,
        up: Span<Self::Tensor>,
        width: usize,
        n: usize,
    ) -> Result<(), ComputeError>;
    /// `y = gelu(y)` over `n` elements.
    fn gelu(&self, y: &Self::Tensor, n: usize) -> Result<(), ComputeError>;
    /// `y += x` over `n` elements.
    fn add(&self, y: &Self::Tensor, x: &Self::Tensor, n: usize) -> Result<(), ComputeError>;
    /// `y *= s` over `n` elements.
    fn scale(&self, y: &Self::Tensor, s: f32, n: usize) -> Result<(), ComputeError>;
    /// `y = c * tanh(y / c)` over `n` elements.
    fn softcap(&self, y: &Self::Tensor, c: f32, n: usize) -> Result<(), ComputeError>;
    /// Stores `n` rows of keys and values for positions `start_pos..`.
    fn kv_store(
        &self,
        cache: &Self::Cache,
        k: Span<Self::Tensor>,
        v: Span<Self::Tensor>,
        n: usize,
        start_pos: usize,
    ) -> Result<(), ComputeError>;
    /// Attention of `n` query rows at positions `start_pos..` over `cache` into `out`.
    fn attention(
        &self,
        cache: &Self::Cache,
        p: &crate::AttnParams,
        q: Span<Self::Tensor>,
        n: usize,
        start_pos: usize,
        out: Span<Self::Tensor>,
    ) -> Result<(), ComputeError>;
}

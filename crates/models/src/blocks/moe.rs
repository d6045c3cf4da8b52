//! Mixture-of-experts feed-forward as llama.cpp's `build_moe_ffn` computes it: a router
//! (softmax, sigmoid or softmax over the selected experts; selection bias; group-limited
//! top-k; optional renormalisation and scale) choosing `n_used` of `n_expert` SwiGLU experts
//! stored stacked in `ffn_{gate,up,down}_exps`, plus optional shared experts.

/// How router logits become expert probabilities (`expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gating {
    /// 1: softmax over all experts.
    Softmax,
    /// 2: sigmoid of each logit.
    Sigmoid,
    /// 3: softmax over the selected experts' logits only.
    SoftmaxWeight,
}

/// The shared expert(s) added to the routed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    None,
    /// DeepSeek: `ffn_{gate,up,down}_shexp`, added as is.
    Plain,
    /// Qwen2-MoE: the shared expert's output times `sigmoid(ffn_gate_inp_shexp · x)`.
    Gated,
}

/// What a family chooses for a MoE layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MoeSpec {
    pub n_expert: usize,
    pub n_used: usize,
    /// Hidden units of one expert.
    pub n_ff_exp: usize,
    pub gating: Gating,
    /// Divide the chosen weights by their sum.
    pub norm_weights: bool,
    /// Multiply the chosen weights by this (0 or 1 = none).
    pub weights_scale: f32,
    /// Group-limited routing: experts in `n_group` groups, only the best `n_group_used`
    /// groups (by the sum of their top-2 biased scores) are eligible. 0 = no groups.
    pub n_group: usize,
    pub n_group_used: usize,
    pub shared: Shared,
    /// Hidden units of the shared expert(s).
    pub n_ff_shared: usize,
}

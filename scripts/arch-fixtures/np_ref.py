#!/usr/bin/env python3
"""np_ref.py -- independent float64 numpy forward pass for the tiny fixtures.

Reads a fixture GGUF + its llama.cpp reference JSON, runs the model teacher-forced on
prompt_ids + generated_ids (40 tokens, one causal pass) and compares
  positions  0..23 with prompt_logits
  positions 24..39 with gen_logits
This checks that the fixtures mean what README.txt says (and documents the math in
plain numpy -- a second reference for the Rust engine).

    python3 tools/np_ref.py llama.gguf [llama.json]      (from the fixtures folder)
    python3 tools/np_ref.py --all
    python3 scripts/arch-fixtures/np_ref.py crates/models/tests/data/NAME.gguf   (this repo's copy)

GELU note: llama.cpp's CPU GELU goes through an FP16 lookup table
(y = fp16(gelu(fp16(x)))); that is emulated here (set GELU_FP16=0 in the env to disable).
"""
import json
import math
import os
import sys

LLAMA_CPP_DIR = os.environ.get("LLAMA_CPP_DIR", os.path.expanduser("~/.cache/torchless-ref/llama.cpp"))
sys.path.insert(0, os.path.join(LLAMA_CPP_DIR, "gguf-py"))
import numpy as np  # noqa: E402
import gguf  # noqa: E402

GELU_FP16 = os.environ.get("GELU_FP16", "1") != "0"
# emulate llama.cpp's activation conversion for F16 / Q8_0 weights (ggml vec_dot_type):
#   F16 weights: activations rounded to F16; Q8_0 weights: activations quantized to Q8_0
#   (per 32 values: d = fp16(max|x|/127), q = round(x/d)), integer dot products
ACT_EMU = os.environ.get("ACT_EMU", "1") != "0"
WTYPE = {}   # id(weight array) -> GGML type name


# ----------------------------------------------------------------------------- loading
class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.kv = {f.name: f.contents() for f in r.fields.values() if not f.name.startswith("GGUF.")}
        self.arch = self.kv["general.architecture"]
        self.t = {}
        for t in r.tensors:
            shape = tuple(int(x) for x in reversed(t.shape))  # numpy order
            if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                a = np.asarray(t.data).astype(np.float64)
            else:
                a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64)
            self.t[t.name] = a.reshape(shape)
            WTYPE[id(self.t[t.name])] = t.tensor_type.name

    def k(self, key, default=None):
        return self.kv.get(f"{self.arch}.{key}", default)

    def w(self, name):
        return self.t.get(name)


# ----------------------------------------------------------------------------- ops
def rmsnorm(x, w, eps):
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return y * w if w is not None else y


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    y = xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
    return y * w + b


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    def g(v):
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * v * (1.0 + 0.044715 * v * v)))
    if not GELU_FP16:
        return g(x)
    xh = x.astype(np.float16).astype(np.float64)
    y = g(xh).astype(np.float32).astype(np.float16).astype(np.float64)
    return np.where(x <= -10.0, 0.0, np.where(x >= 10.0, x, y))


def q8_0_act(x):
    xs = x.reshape(*x.shape[:-1], -1, 32).astype(np.float32)
    amax = np.abs(xs).max(-1, keepdims=True)
    d = amax / 127.0
    idv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0).astype(np.float32)
    q = np.round(xs * idv)                       # ties are measure-zero here
    dh = d.astype(np.float16).astype(np.float64)
    return (q * dh).reshape(x.shape)


def lin(x, W, b=None):
    t = WTYPE.get(id(W), "F32")
    if ACT_EMU and t == "F16":
        x = x.astype(np.float16).astype(np.float64)
    elif ACT_EMU and t == "Q8_0":
        x = q8_0_act(x)
    y = x @ W.T
    return y + b if b is not None else y


def yarn_corr_dims(n_dims, n_ctx_orig, base, beta_fast=32.0, beta_slow=1.0):
    def cd(n_rot):
        return n_dims * math.log(n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))
    return max(0.0, math.floor(cd(beta_fast))), min(n_dims - 1.0, math.ceil(cd(beta_slow)))


def rope(x, pos, n_rot, base, neox, freq_scale=1.0, factors=None, ext_factor=0.0, attn_factor=1.0,
         n_ctx_orig=0):
    """x: [T, H, D]; ggml_rope_ext semantics (rotates the first n_rot dims)"""
    x = x.copy()
    T = x.shape[0]
    i = np.arange(n_rot // 2)
    theta_extrap = pos[:, None] * base ** (-2.0 * i / n_rot)[None, :]
    if factors is not None:
        theta_extrap = theta_extrap / factors[None, :]
    theta = freq_scale * theta_extrap
    mscale = np.full(n_rot // 2, attn_factor)
    if ext_factor != 0.0:
        lo, hi = yarn_corr_dims(n_rot, n_ctx_orig, base)
        y = (i - lo) / max(0.001, hi - lo)
        ramp = 1 - np.clip(y, 0, 1)
        mix = ramp * ext_factor
        theta = theta * (1 - mix) + theta_extrap * mix
        mscale = mscale * (1.0 + 0.1 * math.log(1.0 / freq_scale))
    cos = (np.cos(theta) * mscale)[:, None, :]
    sin = (np.sin(theta) * mscale)[:, None, :]
    if neox:
        a, b = x[:, :, i].copy(), x[:, :, i + n_rot // 2].copy()
        x[:, :, i] = a * cos - b * sin
        x[:, :, i + n_rot // 2] = a * sin + b * cos
    else:
        a, b = x[:, :, 2 * i].copy(), x[:, :, 2 * i + 1].copy()
        x[:, :, 2 * i] = a * cos - b * sin
        x[:, :, 2 * i + 1] = a * sin + b * cos
    assert x.shape[0] == T
    return x


def attention(q, k, v, scale, softcap=0.0, n_swa=0):
    """q [T,Hq,D], k [T,Hk,D], v [T,Hk,Dv] -> [T, Hq*Dv]; causal (+ standard SWA)"""
    T, Hq, _ = q.shape
    Hk = k.shape[1]
    g = Hq // Hk
    out = np.zeros((T, Hq, v.shape[2]))
    p1 = np.arange(T)[:, None]
    p0 = np.arange(T)[None, :]
    mask = p0 > p1
    if n_swa:
        mask = mask | (p1 - p0 >= n_swa)
    for h in range(Hq):
        s = q[:, h, :] @ k[:, h // g, :].T
        if softcap:
            s = softcap * np.tanh(s / softcap)
        s = s * scale
        s = np.where(mask, -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        out[:, h, :] = p @ v[:, h // g, :]
    return out.reshape(T, -1)


def moe(x, m, p, n_expert, n_used, gating="softmax", norm_w=False, w_scale=0.0, probs_b=None,
        n_groups=0, n_group_used=0):
    """x [T, n_embd]; returns [T, n_embd]  (build_moe_ffn with SILU experts)"""
    logits = lin(x, m.w(p + "ffn_gate_inp.weight"))
    if gating == "softmax":
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
    else:
        probs = 1.0 / (1.0 + np.exp(-logits))
    sel = probs + probs_b if probs_b is not None else probs.copy()
    if n_groups > 1:
        T = x.shape[0]
        per = n_expert // n_groups
        grp = sel.reshape(T, n_groups, per)
        gscore = np.sort(grp, axis=-1)[:, :, -2:].sum(-1)
        keep = np.argsort(-gscore, axis=-1, kind="stable")[:, :n_group_used]
        m_ = np.full_like(grp, -np.inf)
        for t in range(T):
            m_[t, keep[t]] = grp[t, keep[t]]
        sel = m_.reshape(T, n_expert)
    Wg, Wu, Wd = m.w(p + "ffn_gate_exps.weight"), m.w(p + "ffn_up_exps.weight"), m.w(p + "ffn_down_exps.weight")
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        top = np.argsort(-sel[t], kind="stable")[:n_used]
        w = probs[t, top]
        if norm_w:
            w = w / max(w.sum(), 6.103515625e-5)
        if w_scale != 0.0 and w_scale != 1.0:
            w = w * w_scale
        for e_, we in zip(top, w):
            h = silu(Wg[e_] @ x[t]) * (Wu[e_] @ x[t])
            out[t] += we * (Wd[e_] @ h)
    return out


def swiglu_ffn(x, m, p, gelu_act=False):
    g = lin(x, m.w(p + "ffn_gate.weight"))
    u = lin(x, m.w(p + "ffn_up.weight"))
    a = gelu(g) if gelu_act else silu(g)
    return lin(a * u, m.w(p + "ffn_down.weight"))


# ----------------------------------------------------------------------------- forward
def forward(m, tokens, n_ctx=128):
    arch = m.arch
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    n_embd = m.k("embedding_length")
    n_layer = m.k("block_count")
    n_head = m.k("attention.head_count")
    n_head_kv = m.k("attention.head_count_kv", n_head)
    hd = m.k("attention.key_length", n_embd // n_head)
    n_rot = m.k("rope.dimension_count", hd)
    base = m.k("rope.freq_base", 10000.0)
    rms_eps = m.k("attention.layer_norm_rms_epsilon", 1e-5)
    ln_eps = m.k("attention.layer_norm_epsilon", 1e-5)
    scaling = m.k("rope.scaling.type", "linear")
    factor = m.k("rope.scaling.factor", 0.0)
    freq_scale = 1.0 / factor if factor else 1.0
    n_ctx_orig = m.k("rope.scaling.original_context_length", m.k("context_length"))
    rope_attn_factor = m.k("rope.scaling.attn_factor", 1.0)
    # YaRN (non-deepseek2): ext_factor 1; llama-context sets yarn_attn_factor =
    # mscale(factor) / (1 + 0.1 ln factor) * rope.scaling.attn_factor (= attn_factor when there is no
    # yarn_log_multiplier) and ggml's rope multiplies cos/sin by (1 + 0.1 ln factor) again -> net
    # magnitude (1 + 0.1 ln factor) on q and k.  Ramp between n_ctx_orig-based correction dims.
    yarn_ext = 0.0
    if scaling == "yarn" and arch != "deepseek2":
        yarn_ext = 1.0
        if m.k("rope.scaling.yarn_log_multiplier", 0.0):
            raise NotImplementedError("yarn_log_multiplier outside deepseek2")
    neox = arch not in ("llama", "deepseek2")
    E = m.w("token_embd.weight")
    out_w = m.w("output.weight") if m.w("output.weight") is not None else E
    x = E[tokens]
    if arch in ("gemma", "gemma2", "gemma3"):
        x = x * np.float64(np.float32(math.sqrt(n_embd)))

    # rope frequency factors
    factors = m.w("rope_freqs.weight")
    if m.w("rope_factors_long.weight") is not None:
        n_ctx_seq = max(256, ((n_ctx + 255) // 256) * 256)   # llama.cpp pads n_ctx to 256
        factors = m.w("rope_factors_long.weight") if n_ctx_seq > n_ctx_orig else m.w("rope_factors_short.weight")

    # SWA
    n_swa = m.k("attention.sliding_window", 0)
    if arch == "gemma2":
        pattern = m.k("attention.sliding_window_pattern", 2)
    elif arch == "gemma3":
        pattern = m.k("attention.sliding_window_pattern", 6)
    else:
        pattern = 0
        n_swa = 0

    # note: phi3 reads attention.sliding_window but llama.cpp b11434 disables Phi-3 SWA (warning
    # "Phi SWA is currently disabled"), so phi3 attends causally over everything -- as here.
    # sliding_window_pattern may also be a per-layer bool array (load_swa_pattern).

    def is_swa(il):
        if isinstance(pattern, list):
            return bool(n_swa) and bool(pattern[il])
        return bool(n_swa) and (il % pattern < pattern - 1)

    for il in range(n_layer):
        p = f"blk.{il}."
        if arch in ("gptneox", "phi2"):
            h = layernorm(x, m.w(p + "attn_norm.weight"), m.w(p + "attn_norm.bias"), ln_eps)
        else:
            h = rmsnorm(x, m.w(p + "attn_norm.weight"), rms_eps)

        if arch == "deepseek2":
            a = deepseek2_attn(m, h, p, pos, n_head)
        else:
            if m.w(p + "attn_qkv.weight") is not None:
                qkv = lin(h, m.w(p + "attn_qkv.weight"), m.w(p + "attn_qkv.bias"))
                nq, nk = n_head * hd, n_head_kv * hd
                q, k, v = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
            else:
                q = lin(h, m.w(p + "attn_q.weight"), m.w(p + "attn_q.bias"))
                k = lin(h, m.w(p + "attn_k.weight"), m.w(p + "attn_k.bias"))
                v = lin(h, m.w(p + "attn_v.weight"), m.w(p + "attn_v.bias"))
            q = q.reshape(T, n_head, hd)
            k = k.reshape(T, n_head_kv, hd)
            v = v.reshape(T, n_head_kv, hd)
            if m.w(p + "attn_q_norm.weight") is not None:
                q = rmsnorm(q, m.w(p + "attn_q_norm.weight"), rms_eps)
                k = rmsnorm(k, m.w(p + "attn_k_norm.weight"), rms_eps)
            fb, fs = base, freq_scale
            if arch == "gemma3" and is_swa(il):
                fb, fs = m.k("rope.freq_base_swa", 10000.0), 1.0
            q = rope(q, pos, n_rot, fb, neox, fs, factors, yarn_ext, rope_attn_factor, n_ctx_orig)
            k = rope(k, pos, n_rot, fb, neox, fs, factors, yarn_ext, rope_attn_factor, n_ctx_orig)
            if arch in ("gemma2", "gemma3"):
                q = q * (1.0 / math.sqrt(hd))      # f_attention_scale (non-27B)
                scale = 1.0
            else:
                scale = 1.0 / math.sqrt(hd)
            softcap = m.k("attn_logit_softcapping", 0.0) if arch == "gemma2" else 0.0
            a = attention(q, k, v, scale, softcap, n_swa if is_swa(il) else 0)
            a = lin(a, m.w(p + "attn_output.weight"), m.w(p + "attn_output.bias"))

        if arch in ("gemma2", "gemma3"):
            a = rmsnorm(a, m.w(p + "post_attention_norm.weight"), rms_eps)

        if arch == "phi2":
            f = lin(gelu(lin(h, m.w(p + "ffn_up.weight"), m.w(p + "ffn_up.bias"))),
                    m.w(p + "ffn_down.weight"), m.w(p + "ffn_down.bias"))
            x = x + a + f
            continue
        if arch == "gptneox":
            par = bool(m.k("use_parallel_residual", True))
            if not par:                     # sequential: x += attn(ln1(x)); x += mlp(ln2(x))
                x = x + a
            h2 = layernorm(x, m.w(p + "ffn_norm.weight"), m.w(p + "ffn_norm.bias"), ln_eps)
            f = lin(gelu(lin(h2, m.w(p + "ffn_up.weight"), m.w(p + "ffn_up.bias"))),
                    m.w(p + "ffn_down.weight"), m.w(p + "ffn_down.bias"))
            x = x + a + f if par else x + f
            continue

        x = x + a
        h = rmsnorm(x, m.w(p + "ffn_norm.weight"), rms_eps)
        if arch == "phi3":
            gu = lin(h, m.w(p + "ffn_up.weight"))
            nff = gu.shape[1] // 2
            f = lin(silu(gu[:, :nff]) * gu[:, nff:], m.w(p + "ffn_down.weight"))
        elif arch in ("gemma", "gemma2", "gemma3"):
            f = swiglu_ffn(h, m, p, gelu_act=True)
        elif arch == "qwen2moe":
            f = moe(h, m, p, m.k("expert_count"), m.k("expert_used_count"), "softmax", norm_w=False)
            sg = 1.0 / (1.0 + np.exp(-(h @ m.w(p + "ffn_gate_inp_shexp.weight"))))
            sh = lin(silu(lin(h, m.w(p + "ffn_gate_shexp.weight"))) * lin(h, m.w(p + "ffn_up_shexp.weight")),
                     m.w(p + "ffn_down_shexp.weight"))
            f = f + sh * sg[:, None]
        elif arch == "qwen3moe":            # no shared expert; top-k softmax weights renormalised
            f = moe(h, m, p, m.k("expert_count"), m.k("expert_used_count"), "softmax", norm_w=True,
                    w_scale=m.k("expert_weights_scale", 0.0))
        elif arch == "deepseek2" and m.w(p + "ffn_gate_inp.weight") is not None:
            gating = {1: "softmax", 2: "sigmoid"}[m.k("expert_gating_func", 1)]
            f = moe(h, m, p, m.k("expert_count"), m.k("expert_used_count"), gating,
                    norm_w=bool(m.k("expert_weights_norm", False)), w_scale=m.k("expert_weights_scale", 0.0),
                    probs_b=m.w(p + "exp_probs_b.bias"), n_groups=m.k("expert_group_count", 0),
                    n_group_used=m.k("expert_group_used_count", 0))
            sh = lin(silu(lin(h, m.w(p + "ffn_gate_shexp.weight"))) * lin(h, m.w(p + "ffn_up_shexp.weight")),
                     m.w(p + "ffn_down_shexp.weight"))
            f = f + sh
        elif m.w(p + "ffn_gate_inp.weight") is not None:   # llama MoE (mixtral)
            f = moe(h, m, p, m.k("expert_count"), m.k("expert_used_count"), "softmax", norm_w=True)
        else:
            f = swiglu_ffn(h, m, p)
        if arch in ("gemma2", "gemma3"):
            f = rmsnorm(f, m.w(p + "post_ffw_norm.weight"), rms_eps)
        x = x + f

    if arch in ("gptneox", "phi2"):
        x = layernorm(x, m.w("output_norm.weight"), m.w("output_norm.bias"), ln_eps)
    else:
        x = rmsnorm(x, m.w("output_norm.weight"), rms_eps)
    logits = lin(x, out_w, m.w("output.bias"))
    fcap = m.k("final_logit_softcapping", 0.0)
    if fcap and arch in ("gemma2", "gemma3"):
        logits = fcap * np.tanh(logits / fcap)
    return logits


def deepseek2_attn(m, h, p, pos, n_head):
    """MLA.  Two GGUF layouts (llama.cpp: hparams.is_mla() = key_length_mla and value_length_mla set):
      split attn_k_b / attn_v_b (current converter): absorbed MLA -- q_nope is projected into the
        kv_lora space and attends over the compressed cache (MQA, one KV head);
      legacy attn_kv_b (no *_mla keys; key_length/value_length = per-head nope+rope / v_head):
        non-absorbed MHA -- kv_c is decompressed to per-head k_nope and v, K = [k_nope | k_pe].
    Both give the same function of the weights (up to rounding)."""
    T = h.shape[0]
    kv_lora = m.k("attention.kv_lora_rank")
    legacy = m.w(p + "attn_kv_b.weight") is not None
    hd_k = m.k("attention.key_length" if legacy else "attention.key_length_mla")
    vdim = m.k("attention.value_length" if legacy else "attention.value_length_mla")
    rope_d = m.k("rope.dimension_count")
    nope = hd_k - rope_d
    base = m.k("rope.freq_base", 10000.0)
    eps = m.k("attention.layer_norm_rms_epsilon")
    factor = m.k("rope.scaling.factor", 0.0)
    yarn = m.k("rope.scaling.type", "") == "yarn"
    freq_scale = 1.0 / factor if factor else 1.0
    n_ctx_orig = m.k("rope.scaling.original_context_length", m.k("context_length"))
    log_mul = m.k("rope.scaling.yarn_log_multiplier", 0.0) / 0.1     # llama.cpp divides by 0.1 on load
    # llama-context: yarn_attn_factor = 1/(1+0.1 ln(factor)) (mscale ratio = 1 here); the rope then
    # multiplies by (1+0.1 ln(1/freq_scale)) -> net rope magnitude 1
    ext = 1.0 if yarn else 0.0
    attn_factor = 1.0 / (1.0 + 0.1 * math.log(1.0 / freq_scale)) if yarn else 1.0
    mscale = (attn_factor * (1.0 + 0.1 * math.log(1.0 / freq_scale))) * (1.0 + 0.1 * log_mul * math.log(1.0 / freq_scale))
    kq_scale = mscale * mscale / math.sqrt(hd_k)

    if m.w(p + "attn_q_a.weight") is not None:
        q = lin(rmsnorm(lin(h, m.w(p + "attn_q_a.weight")), m.w(p + "attn_q_a_norm.weight"), eps), m.w(p + "attn_q_b.weight"))
    else:
        q = lin(h, m.w(p + "attn_q.weight"))
    q = q.reshape(T, n_head, hd_k)
    q_nope, q_pe = q[:, :, :nope], q[:, :, nope:]
    kva = lin(h, m.w(p + "attn_kv_a_mqa.weight"))
    kv_c = rmsnorm(kva[:, :kv_lora], m.w(p + "attn_kv_a_norm.weight"), eps)
    k_pe = kva[:, kv_lora:].reshape(T, 1, rope_d)
    q_pe = rope(q_pe, pos, rope_d, base, False, freq_scale, None, ext, attn_factor, n_ctx_orig)
    k_pe = rope(k_pe, pos, rope_d, base, False, freq_scale, None, ext, attn_factor, n_ctx_orig)
    out = np.zeros((T, n_head, vdim))
    mask = np.arange(T)[None, :] > np.arange(T)[:, None]

    def softmax_rows(s):
        s = np.where(mask, -np.inf, s * kq_scale)
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        return pr / pr.sum(-1, keepdims=True)

    if legacy:
        # attn_kv_b: numpy [n_head * (nope + vdim), kv_lora]; per head nope rows of K, then vdim rows of V
        kv = lin(kv_c, m.w(p + "attn_kv_b.weight")).reshape(T, n_head, nope + vdim)
        k_nope, v = kv[:, :, :nope], kv[:, :, nope:]
        for hh in range(n_head):
            s = q_nope[:, hh, :] @ k_nope[:, hh, :].T + q_pe[:, hh, :] @ k_pe[:, 0, :].T
            out[:, hh, :] = softmax_rows(s) @ v[:, hh, :]
    else:
        wkb = m.w(p + "attn_k_b.weight")   # [n_head, kv_lora, nope]
        wvb = m.w(p + "attn_v_b.weight")   # [n_head, vdim, kv_lora]
        for hh in range(n_head):
            qa = q_nope[:, hh, :] @ wkb[hh].T                      # [T, kv_lora]
            s = qa @ kv_c.T + q_pe[:, hh, :] @ k_pe[:, 0, :].T
            out[:, hh, :] = (softmax_rows(s) @ kv_c) @ wvb[hh].T
    return lin(out.reshape(T, -1), m.w(p + "attn_output.weight"))


# ----------------------------------------------------------------------------- main
def check(gguf_path, json_path=None):
    json_path = json_path or gguf_path[:-5] + ".json"
    ref = json.load(open(json_path))
    m = Model(gguf_path)
    toks = ref["prompt_ids"] + ref["generated_ids"]
    logits = forward(m, toks)
    P = np.array(ref["prompt_logits"], dtype=np.float64)
    G = np.array(ref["gen_logits"], dtype=np.float64)
    n = len(ref["prompt_ids"])
    dp = np.abs(logits[:n] - P).max()
    dg = np.abs(logits[n:] - G).max()
    agree = int((logits[n - 1:-1].argmax(-1) == np.array(ref["generated_ids"])).sum())
    return dp, dg, agree


def main():
    args = sys.argv[1:]
    if args and args[0] == "--all":
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sets = args[1:] or ["."]
        worst = 0.0
        for s in sets:
            for g in sorted(os.listdir(os.path.join(here, s))):
                if not g.endswith(".gguf"):
                    continue
                path = os.path.join(here, s, g)
                dp, dg, agree = check(path)
                worst = max(worst, dp, dg)
                print(f"{s}/{g:24s} max|numpy-llama.cpp| prompt {dp:.2e} gen {dg:.2e}  greedy ids reproduced {agree}/16")
        print(f"worst {worst:.2e}")
    else:
        dp, dg, agree = check(*args)
        print(f"max|numpy-llama.cpp| prompt {dp:.2e} gen {dg:.2e}  greedy ids reproduced {agree}/16")


if __name__ == "__main__":
    main()

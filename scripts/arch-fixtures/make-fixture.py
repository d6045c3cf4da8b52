#!/usr/bin/env python3
"""make-fixture.py -- derive a tiny random-weight GGUF fixture from an existing one.

Copies every metadata key (tokenizer arrays untouched) and every tensor of a base fixture,
then applies overrides: metadata changes/additions/removals, extra layers with seeded random
weights, Q8_0 quantization of the 2-D tensors.

    make-fixture.py NAME OUT.gguf [--base-dir DIR]          # a preset (see PRESETS / --list)
    make-fixture.py --base IN.gguf OUT.gguf [--set KEY=TYPE:VALUE ...] [--del KEY ...]
                    [--add-layers N] [--q8_0] [--seed S] [--arch NEW]   # ad hoc

TYPE: u32 i32 f32 bool str (e.g. --set gptneox.use_parallel_residual=bool:false).
gguf-py is taken from the llama.cpp tree ($LLAMA_CPP_DIR, default ~/.cache/torchless-ref/llama.cpp;
it differs from the pip release), falling back to an installed `gguf`.

Extra layers (--add-layers N): blk.<n_layer+j>.* copies the tensor list of the last layer, each
tensor drawn from N(mean, std) of its source tensor (so norm weights stay ~1 +- 0.1, linear weights
keep their gain), with numpy stream default_rng([seed, 1000 + j]); block_count is raised.

Presets can also change the architecture (opts "arch": every `OLD.*` key becomes `NEW.*`), delete
keys ("dels", names after the rename) and rewrite the tensor list ("tensors": a function
(tensors, base_dir) -> tensors over (name, numpy array, GGML type) triples, see the
*_tensors functions below).
"""
import argparse
import os
import re
import sys

LLAMA_CPP_DIR = os.environ.get("LLAMA_CPP_DIR", os.path.expanduser("~/.cache/torchless-ref/llama.cpp"))
sys.path.insert(0, os.path.join(LLAMA_CPP_DIR, "gguf-py"))
import numpy as np  # noqa: E402
import gguf  # noqa: E402

VT = gguf.GGUFValueType
TYPES = {"u32": VT.UINT32, "i32": VT.INT32, "f32": VT.FLOAT32, "bool": VT.BOOL, "str": VT.STRING}

F32 = gguf.GGMLQuantizationType.F32


def read_tensors(path):
    """[(name, numpy array in numpy order, GGML type)] of a GGUF"""
    return [(t.name, t.data, t.tensor_type) for t in gguf.GGUFReader(path).tensors]


def qwen3moe_tensors(tensors, base_dir):
    """qwen2moe -> qwen3moe: drop the q/k/v biases and the shared expert (ffn_*_shexp,
    ffn_gate_inp_shexp); add per-head attn_q_norm / attn_k_norm (head_dim 16) taken from
    qwen3.gguf's layer of the same index, right after attn_output (qwen3.gguf's order)."""
    qk_norms = {n: (n, d, t) for n, d, t in read_tensors(os.path.join(base_dir, "qwen3.gguf"))
                if re.fullmatch(r"blk\.\d+\.attn_[qk]_norm\.weight", n)}
    out = []
    for name, data, ttype in tensors:
        if re.fullmatch(r"blk\.\d+\.(attn_[qkv]\.bias|ffn_\w+_shexp\.weight)", name):
            continue
        out.append((name, data, ttype))
        if name.endswith(".attn_output.weight"):
            blk = name[:-len("attn_output.weight")]
            out += [qk_norms[blk + "attn_q_norm.weight"], qk_norms[blk + "attn_k_norm.weight"]]
    return out


def kv_b_tensors(tensors, base_dir):
    """deepseek2 split attn_k_b / attn_v_b -> one legacy attn_kv_b per layer (the inverse of the
    converter's split in conversion/deepseek.py):
        HF kv_b_proj [n_head * (nope + v_head), kv_lora] viewed as [n_head, nope + v_head, kv_lora];
        k_b = kv_b[:, :nope, :].transpose(1, 2)  -> attn_k_b, numpy [n_head, kv_lora, nope]
        v_b = kv_b[:, nope:, :]                  -> attn_v_b, numpy [n_head, v_head, kv_lora]
    so kv_b = concat(k_b.transpose(0, 2, 1), v_b, axis=1).reshape(-1, kv_lora): numpy
    [n_head * (nope + v_head), kv_lora] = ggml {kv_lora, n_head * (nope + v_head)}, per head the
    nope rows of K first, then the v_head rows of V.  attn_kv_b takes attn_k_b's place."""
    by_name = {n: d for n, d, _ in tensors}
    out = []
    for name, data, ttype in tensors:
        if name.endswith(".attn_v_b.weight"):
            continue
        if name.endswith(".attn_k_b.weight"):
            k_b = np.asarray(data)                                         # [n_head, kv_lora, nope]
            v_b = np.asarray(by_name[name.replace("attn_k_b", "attn_v_b")])  # [n_head, v_head, kv_lora]
            assert ttype == F32 and k_b.shape[0] == v_b.shape[0] and k_b.shape[1] == v_b.shape[2]
            kv_b = np.concatenate([k_b.transpose(0, 2, 1), v_b], axis=1).reshape(-1, k_b.shape[1])
            out.append((name.replace("attn_k_b", "attn_kv_b"), np.ascontiguousarray(kv_b), F32))
            continue
        out.append((name, data, ttype))
    return out


# name -> (base fixture, {key: (type, value)}, options)
PRESETS = {
    "gptneox-seq": ("gptneox.gguf", {
        "general.name": ("str", "tiny-gptneox-seq"),
        "general.description": ("str", "GPT-NeoX with use_parallel_residual = false (sequential residual: "
                                       "x += attn(ln1(x)); x += mlp(ln2(x))) -- random weights, test fixture"),
        "gptneox.use_parallel_residual": ("bool", False),
    }, {}),
    "phi3-swa": ("phi3.gguf", {
        "general.name": ("str", "tiny-phi 3-swa"),   # must not contain "phi3" / "phi-3" (tokenizer quirks)
        "general.description": ("str", "Phi-3 with attention.sliding_window = 8 (llama.cpp b11434 ignores "
                                       "Phi-3 SWA: full causal attention) -- random weights, test fixture"),
        "phi3.attention.sliding_window": ("u32", 8),
    }, {}),
    "llama-yarn": ("llama.gguf", {
        "general.name": ("str", "tiny-llama-yarn"),
        "general.description": ("str", "LLaMA with YaRN rope scaling: factor 4, original ctx 32, no "
                                       "yarn_log_multiplier -- random weights, test fixture"),
        "llama.rope.scaling.type": ("str", "yarn"),
        "llama.rope.scaling.factor": ("f32", 4.0),
        "llama.rope.scaling.original_context_length": ("u32", 32),
    }, {}),
    "gemma2-pattern3": ("gemma2.gguf", {
        "general.name": ("str", "tiny-gemma2-pattern3"),
        "general.description": ("str", "Gemma 2, 3 layers, sliding_window 4, sliding_window_pattern 3 "
                                       "(layers 0,1 SWA, layer 2 global) -- random weights, test fixture"),
        "gemma2.attention.sliding_window": ("u32", 4),
        "gemma2.attention.sliding_window_pattern": ("u32", 3),
    }, {"add_layers": 1}),
    "phi2-q8_0": ("phi2.gguf", {
        "general.name": ("str", "tiny-phi2-q8_0"),
        "general.description": ("str", "phi2.gguf with every 2-D tensor quantized to Q8_0 (gguf-py quants, "
                                       "incl. token_embd/output); 1-D tensors F32 -- random weights, test fixture"),
    }, {"q8_0": True}),
    "qwen3moe": ("qwen2moe.gguf", {
        "general.name": ("str", "tiny-qwen3moe"),
        "general.description": ("str", "Qwen3-MoE (per-head q_norm/k_norm, no attention biases, 8 experts "
                                       "top-2, softmax with the top-2 weights renormalised, no shared expert) "
                                       "-- random weights, test fixture"),
        "qwen3moe.attention.key_length": ("u32", 16),     # like real Qwen3-MoE files (= n_embd / n_head here)
        "qwen3moe.attention.value_length": ("u32", 16),
    }, {"arch": "qwen3moe", "dels": ["qwen3moe.expert_shared_feed_forward_length"],
        "tensors": qwen3moe_tensors}),
    "deepseek2-kvb": ("deepseek2.gguf", {
        "general.name": ("str", "tiny-deepseek2-kvb"),
        "general.description": ("str", "DeepSeek-V2, legacy layout: one attn_kv_b per layer (no attn_k_b/"
                                       "attn_v_b, no key/value_length_mla) -> llama.cpp runs non-absorbed MHA; "
                                       "same weights as deepseek2.gguf -- random weights, test fixture"),
        # legacy (pre-MLA-absorption) metadata: per-head decompressed sizes, n_head_kv = n_head
        "deepseek2.attention.head_count_kv": ("u32", 4),
        "deepseek2.attention.key_length": ("u32", 24),     # qk_nope 16 + qk_rope 8
        "deepseek2.attention.value_length": ("u32", 16),   # v_head
    }, {"dels": ["deepseek2.attention.key_length_mla", "deepseek2.attention.value_length_mla"],
        "tensors": kv_b_tensors}),
}


def parse_set(s):
    key, tv = s.split("=", 1)
    t, v = tv.split(":", 1)
    if t == "bool":
        v = v.lower() in ("1", "true", "yes")
    elif t in ("u32", "i32"):
        v = int(v)
    elif t == "f32":
        v = float(v)
    return key, (t, v)


def make(base, out, sets, dels=(), add_layers=0, q8_0=False, seed=1, arch=None, tensors=None, base_dir="."):
    r = gguf.GGUFReader(base)
    old_arch = r.fields["general.architecture"].contents()
    arch = arch or old_arch
    sets = dict(sets)
    n_layer = r.fields[f"{old_arch}.block_count"].contents()
    if add_layers:
        sets[f"{arch}.block_count"] = ("u32", n_layer + add_layers)
    if q8_0:
        sets["general.file_type"] = ("u32", int(gguf.LlamaFileType.MOSTLY_Q8_0))

    w = gguf.GGUFWriter(out, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        name = arch + f.name[len(old_arch):] if f.name.startswith(old_arch + ".") else f.name
        if name in dels:
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == VT.ARRAY else None
        if name in sets:
            t, v = sets.pop(name)
            w.add_key_value(name, v, TYPES[t])
        else:
            w.add_key_value(name, f.contents(), vtype, sub_type=sub)
        if name == "general.file_type" and q8_0 and "general.quantization_version" not in r.fields:
            w.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, VT.UINT32)
    for k, (t, v) in sets.items():      # new keys, after the existing ones
        w.add_key_value(k, v, TYPES[t])

    def add(name, data, ttype):
        if q8_0 and ttype == F32 and data.ndim == 2:
            qd = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, qd, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif ttype in (F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(name, np.array(data))
        else:
            w.add_tensor(name, np.array(data), raw_dtype=ttype)

    ts = [(t.name, t.data, t.tensor_type) for t in r.tensors]
    if tensors:
        ts = tensors(ts, base_dir)
    last = f"blk.{n_layer - 1}."
    last_tensors = [t for t in ts if t[0].startswith(last)]
    for t in ts:
        add(*t)
        if add_layers and t is last_tensors[-1]:
            for j in range(add_layers):
                rng = np.random.default_rng([seed, 1000 + j])
                for name, data, ttype in last_tensors:
                    if ttype != F32:
                        sys.exit(f"--add-layers needs F32 base tensors ({name} is {ttype.name})")
                    src = np.asarray(data, dtype=np.float64)
                    new = rng.normal(src.mean(), src.std(), src.shape).astype(np.float32)
                    add(f"blk.{n_layer + j}." + name[len(last):], new, ttype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="preset name (or omit and give --base)")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--base-dir", default=os.environ.get("FIXTURE_BASE_DIR", "/work/shared/fixtures/arch"))
    ap.add_argument("--base")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=TYPE:VALUE")
    ap.add_argument("--del", dest="dels", action="append", default=[], metavar="KEY")
    ap.add_argument("--add-layers", type=int, default=0)
    ap.add_argument("--q8_0", action="store_true")
    ap.add_argument("--arch", help="new general.architecture (renames every OLD.* key)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for k, (b, s, o) in PRESETS.items():
            o = {kk: getattr(v, "__name__", v) for kk, v in o.items()}
            print(f"{k:18s} base {b:14s} {o} " + ", ".join(f"{kk}={v[1]!r}" for kk, v in s.items()
                                                          if not kk.startswith("general.")))
        return
    if a.base:                      # ad hoc: positional args are just OUT
        out = a.out or a.name
        base, sets, opts = a.base, {}, {}
    else:
        if a.name not in PRESETS:
            sys.exit(f"unknown preset {a.name!r}; presets: {', '.join(PRESETS)}")
        out = a.out
        b, sets, opts = PRESETS[a.name]
        base = os.path.join(a.base_dir, b)
        sets = dict(sets)
    if not out:
        sys.exit("missing OUT.gguf")
    sets.update(parse_set(s) for s in a.set)
    make(base, out, sets, dels=a.dels + opts.get("dels", []), add_layers=a.add_layers or opts.get("add_layers", 0),
         q8_0=a.q8_0 or opts.get("q8_0", False), seed=a.seed, arch=a.arch or opts.get("arch"),
         tensors=opts.get("tensors"), base_dir=a.base_dir)
    print(f"wrote {out} ({os.path.getsize(out)} bytes) from {base}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""make-fixture.py -- derive a tiny random-weight GGUF fixture from an existing one.

Copies every metadata key (tokenizer arrays untouched) and every tensor of a base fixture,
then applies overrides: metadata changes/additions/removals, extra layers with seeded random
weights, Q8_0 quantization of the 2-D tensors.

    make-fixture.py NAME OUT.gguf [--base-dir DIR]          # a preset (see PRESETS / --list)
    make-fixture.py --base IN.gguf OUT.gguf [--set KEY=TYPE:VALUE ...] [--del KEY ...]
                    [--add-layers N] [--q8_0] [--seed S]   # ad hoc

TYPE: u32 i32 f32 bool str (e.g. --set gptneox.use_parallel_residual=bool:false).
gguf-py is taken from the llama.cpp tree ($LLAMA_CPP_DIR, default ~/.cache/torchless-ref/llama.cpp;
it differs from the pip release), falling back to an installed `gguf`.

Extra layers (--add-layers N): blk.<n_layer+j>.* copies the tensor list of the last layer, each
tensor drawn from N(mean, std) of its source tensor (so norm weights stay ~1 +- 0.1, linear weights
keep their gain), with numpy stream default_rng([seed, 1000 + j]); block_count is raised.
"""
import argparse
import os
import sys

LLAMA_CPP_DIR = os.environ.get("LLAMA_CPP_DIR", os.path.expanduser("~/.cache/torchless-ref/llama.cpp"))
sys.path.insert(0, os.path.join(LLAMA_CPP_DIR, "gguf-py"))
import numpy as np  # noqa: E402
import gguf  # noqa: E402

VT = gguf.GGUFValueType
TYPES = {"u32": VT.UINT32, "i32": VT.INT32, "f32": VT.FLOAT32, "bool": VT.BOOL, "str": VT.STRING}

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


def make(base, out, sets, dels=(), add_layers=0, q8_0=False, seed=1):
    r = gguf.GGUFReader(base)
    arch = r.fields["general.architecture"].contents()
    sets = dict(sets)
    n_layer = r.fields[f"{arch}.block_count"].contents()
    if add_layers:
        sets[f"{arch}.block_count"] = ("u32", n_layer + add_layers)
    if q8_0:
        sets["general.file_type"] = ("u32", int(gguf.LlamaFileType.MOSTLY_Q8_0))

    w = gguf.GGUFWriter(out, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture" or f.name in dels:
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == VT.ARRAY else None
        if f.name in sets:
            t, v = sets.pop(f.name)
            w.add_key_value(f.name, v, TYPES[t])
        else:
            w.add_key_value(f.name, f.contents(), vtype, sub_type=sub)
        if f.name == "general.file_type" and q8_0 and "general.quantization_version" not in r.fields:
            w.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, VT.UINT32)
    for k, (t, v) in sets.items():      # new keys, after the existing ones
        w.add_key_value(k, v, TYPES[t])

    def add(name, data, ttype):
        if q8_0 and ttype == gguf.GGMLQuantizationType.F32 and data.ndim == 2:
            qd = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, qd, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif ttype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(name, np.array(data))
        else:
            w.add_tensor(name, np.array(data), raw_dtype=ttype)

    last = f"blk.{n_layer - 1}."
    last_tensors = [t for t in r.tensors if t.name.startswith(last)]
    for t in r.tensors:
        add(t.name, t.data, t.tensor_type)
        if add_layers and t is last_tensors[-1]:
            for j in range(add_layers):
                rng = np.random.default_rng([seed, 1000 + j])
                for s in last_tensors:
                    if s.tensor_type != gguf.GGMLQuantizationType.F32:
                        sys.exit(f"--add-layers needs F32 base tensors ({s.name} is {s.tensor_type.name})")
                    src = np.asarray(s.data, dtype=np.float64)
                    new = rng.normal(src.mean(), src.std(), src.shape).astype(np.float32)
                    add(f"blk.{n_layer + j}." + s.name[len(last):], new, s.tensor_type)

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
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for k, (b, s, o) in PRESETS.items():
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
    make(base, out, sets, dels=a.dels, add_layers=a.add_layers or opts.get("add_layers", 0),
         q8_0=a.q8_0 or opts.get("q8_0", False), seed=a.seed)
    print(f"wrote {out} ({os.path.getsize(out)} bytes) from {base}")


if __name__ == "__main__":
    main()

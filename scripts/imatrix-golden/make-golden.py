#!/usr/bin/env python3
"""Reference data for `torchless imatrix` from llama-imatrix (llama.cpp b11434).

Runs llama-imatrix on MODEL over TEXT with the given chunk size and count, reads the GGUF it
writes (with llama.cpp's own gguf-py) and prints a small JSON summary the Rust test compares
with: the `imatrix.*` keys and, per matrix, its counts, column count, the sum of its
`in_sum2` values and a few sampled columns (8 spread over the row plus the largest). The
whole file would be ~1 MB of floats; these points catch a wrong column, row or count.

    scripts/imatrix-golden/make-golden.py MODEL TEXT CTX CHUNKS > OUT.json

`--no-repack`: llama.cpp's weight repacking crashes on machines with AMX (and SmolLM2's Q4_1
is not repacked on x86 anyway). LLAMA_CPP points at the llama.cpp tree with build/bin
(default ~/.cache/torchless-ref/llama.cpp, see scripts/arch-fixtures/build-llama-cpp.sh;
`cmake --build build --target llama-imatrix` if the binary is missing).
"""
import json
import os
import subprocess
import sys
import tempfile

model, text, ctx, chunks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
llama = os.environ.get("LLAMA_CPP", os.path.expanduser("~/.cache/torchless-ref/llama.cpp"))
sys.path.insert(0, os.path.join(llama, "gguf-py"))
import gguf  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "imatrix.gguf")
    subprocess.run(
        [os.path.join(llama, "build/bin/llama-imatrix"), "-m", model, "-f", text, "-o", out,
         "-c", ctx, "--chunks", chunks, "-t", "2", "--no-repack"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = gguf.GGUFReader(out)
    kv = {f.name: f.contents() for f in r.fields.values() if f.name.startswith("imatrix.")}
    tensors = {t.name: t for t in r.tensors}
    summary = {}
    for name in sorted(tensors):
        if not name.endswith(".in_sum2"):
            continue
        base = name[: -len(".in_sum2")]
        s2 = tensors[name].data.astype("float64").reshape(-1)
        counts = tensors[base + ".counts"].data.reshape(-1)
        cols = int(tensors[name].shape[0])
        picks = sorted({(i * cols) // 8 + 3 for i in range(8)} | {int(s2.argmax())})
        summary[base] = {
            "cols": cols,
            "counts": [int(c) for c in counts],
            "sum": float(s2.sum()),
            "samples": [[i, float(s2[i])] for i in picks],
        }
head = {
    "model": os.path.basename(model),
    "text": os.path.basename(text),
    "ctx": int(ctx),
    "chunks": int(chunks),
    "chunk_count": int(kv["imatrix.chunk_count"]),
    "chunk_size": int(kv["imatrix.chunk_size"]),
}
# One line per matrix, so a diff of the golden shows which ones changed.
lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in summary.items())
print("{\n" + ",\n".join(lines) + ',\n "tensors": {\n' + body + "\n }\n}")

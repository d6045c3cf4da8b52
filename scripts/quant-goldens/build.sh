#!/usr/bin/env bash
# Compiles matmul_hash and greedy against the llama.cpp build of scripts/arch-fixtures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
L="${LLAMA_CPP:-$HOME/.cache/torchless-ref/llama.cpp}"
[ -d "$L/build/bin" ] || { echo "no llama.cpp build in $L: run scripts/arch-fixtures/build-llama-cpp.sh" >&2; exit 1; }
mkdir -p "$here/work"
flags=(-O2 -I "$L/include" -I "$L/ggml/include" -L "$L/build/bin" -Wl,-rpath,"$L/build/bin")
gcc "${flags[@]}" -o "$here/work/matmul_hash" "$here/matmul_hash.c" -lggml -lggml-base -lggml-cpu
gcc "${flags[@]}" -o "$here/work/testfns" "$here/testfns.c" -lggml -lggml-base -lggml-cpu -lm
gcc "${flags[@]}" -o "$here/work/greedy" "$here/greedy.c" -lllama -lggml -lggml-base -lm
echo "built $here/work/matmul_hash, testfns and greedy"

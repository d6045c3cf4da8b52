#!/usr/bin/env bash
# Writes a synthetic 1B-class LLaMA (n_embd 2048, 16 layers, n_ff 8192, 32 heads / 8 KV heads,
# SmolLM2's tokenizer, random F16 weights) with our GGUF writer, then quantizes it with
# llama-quantize to Q4_K_M, Q8_0 and Q4_0. These files cover the memory-bandwidth-bound
# regime of real 1B+ models in benchmarks; their text is noise.
#
#   LLAMA_QUANTIZE=/path/to/llama-quantize scripts/make-synth-models.sh [OUT_DIR]
#
# OUT_DIR defaults to ${TORCHLESS_CACHE:-~/.cache/torchless}/bench. Needs ~4.5 GB of disk.
set -euo pipefail

if [[ -z "${LLAMA_QUANTIZE:-}" || ! -x "${LLAMA_QUANTIZE}" ]]; then
    echo "error: set LLAMA_QUANTIZE to a llama-quantize binary" >&2
    echo "hint: BENCHMARKS.md shows how to build llama.cpp (build/bin/llama-quantize)" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TORCHLESS_CACHE:-$HOME/.cache/torchless}"
out="${1:-$cache/bench}"
mkdir -p "$out"

"$root/scripts/fetch-models.sh" >&2
(cd "$root" && cargo build --release -q -p torchless-models --example synth_llama) >&2
synth="${CARGO_TARGET_DIR:-$root/target}/release/examples/synth_llama"
f16="$out/synth-1b-f16.gguf"
[[ -f "$f16" ]] || "$synth" "$cache/models/smollm2-135m-instruct-q4_1.gguf" "$f16"
for t in Q4_K_M Q8_0 Q4_0; do
    dst="$out/synth-1b-${t,,}.gguf"
    [[ -f "$dst" ]] && continue
    echo "== $dst" >&2
    LD_LIBRARY_PATH="$(dirname "$LLAMA_QUANTIZE")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$LLAMA_QUANTIZE" "$f16" "$dst.part" "$t" >"$dst.log" 2>&1 \
        || { tail -5 "$dst.log" >&2; exit 1; }
    mv "$dst.part" "$dst"
    rm -f "$dst.log"
done
ls -la "$out"/synth-1b-*.gguf

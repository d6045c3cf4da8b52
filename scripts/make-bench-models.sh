#!/usr/bin/env bash
# Requantizes the packaged SmolLM2-135M Q4_1 model into the other weight formats the
# benchmarks cover (Q4_0, Q8_0, Q4_K_M, Q6_K, F16) with llama.cpp's llama-quantize.
#
#   LLAMA_QUANTIZE=/path/to/llama-quantize scripts/make-bench-models.sh
#
# Environment: LLAMA_QUANTIZE (required), TORCHLESS_CACHE (default ~/.cache/torchless).
# Writes $TORCHLESS_CACHE/bench/smollm2-135m-instruct-<type>.gguf; existing files are kept.
# The source is already quantized, so the variants carry Q4_1's rounding on top of their
# own: they are for speed comparisons, not quality.
set -euo pipefail

if [[ -z "${LLAMA_QUANTIZE:-}" || ! -x "${LLAMA_QUANTIZE:-}" ]]; then
    echo "error: set LLAMA_QUANTIZE to a llama-quantize binary" >&2
    exit 2
fi
cache="${TORCHLESS_CACHE:-$HOME/.cache/torchless}"
src="$cache/models/smollm2-135m-instruct-q4_1.gguf"
if [[ ! -f "$src" ]]; then
    echo "error: $src missing (scripts/fetch-models.sh fetches it)" >&2
    exit 2
fi
mkdir -p "$cache/bench"
for ty in Q4_0 Q8_0 Q4_K_M Q6_K F16; do
    out="$cache/bench/smollm2-135m-instruct-$(tr '[:upper:]' '[:lower:]' <<<"$ty").gguf"
    if [[ -f "$out" ]]; then
        echo "$out exists"
        continue
    fi
    "$LLAMA_QUANTIZE" --allow-requantize "$src" "$out.tmp" "$ty" >"$out.log" 2>&1 ||
        { cat "$out.log" >&2; exit 1; }
    mv "$out.tmp" "$out"
    rm -f "$out.log"
    echo "$out"
done

#!/usr/bin/env bash
# Writes synthetic LLaMA files with the shapes of Llama-3.2-1B (n_embd 2048, 16 layers,
# n_ff 8192, 32 heads / 8 KV heads) and Llama-3.2-3B (n_embd 3072, 28 layers, n_ff 8192,
# 24 heads / 8 KV heads), with SmolLM2's tokenizer (a 49152-token vocabulary, where the real
# ones have 128256) and random F16 weights, using our GGUF writer, then quantizes each with
# llama-quantize to Q4_K_M, Q8_0, Q6_K and Q4_0. These files cover the memory-bandwidth-bound
# regime of real 1B+ models in benchmarks; their text is noise.
#
#   LLAMA_QUANTIZE=/path/to/llama-quantize [SIZES="1b 3b"] scripts/make-synth-models.sh [OUT_DIR]
#
# OUT_DIR defaults to ${TORCHLESS_CACHE:-~/.cache/torchless}/bench. Needs ~7 GB of disk for
# the 1B files and ~17 GB for the 3B ones. Existing files are kept.
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
for size in ${SIZES:-1b 3b}; do
    case "$size" in
        1b) dims=(2048 16 8192 32 8) ;;
        3b) dims=(3072 28 8192 24 8) ;;
        *) echo "error: unknown size $size (1b or 3b)" >&2; exit 2 ;;
    esac
    f16="$out/synth-$size-f16.gguf"
    if [[ ! -f "$f16" ]]; then
        "$synth" "$cache/models/smollm2-135m-instruct-q4_1.gguf" "$f16.part" "${dims[@]}"
        mv "$f16.part" "$f16"
    fi
    for t in Q4_K_M Q8_0 Q6_K Q4_0; do
        dst="$out/synth-$size-${t,,}.gguf"
        [[ -f "$dst" ]] && continue
        echo "== $dst" >&2
        LD_LIBRARY_PATH="$(dirname "$LLAMA_QUANTIZE")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            "$LLAMA_QUANTIZE" "$f16" "$dst.part" "$t" >"$dst.log" 2>&1 \
            || { tail -5 "$dst.log" >&2; exit 1; }
        mv "$dst.part" "$dst"
        rm -f "$dst.log"
    done
done
ls -la "$out"/synth-*b-*.gguf

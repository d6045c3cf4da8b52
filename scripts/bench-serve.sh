#!/usr/bin/env bash
# Serving throughput: torchless serve and llama-server (llama.cpp from its PyPI sdist, see
# BENCHMARKS.md) on the same model, one after the other, both with --parallel P, loaded by
# scripts/serve_load.py at 1, 4 and 16 concurrent streaming clients (loopback only).
#
#   LLAMA_SERVER=/path/to/llama-server scripts/bench-serve.sh [MODEL.gguf] [P]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-$HOME/.cache/torchless/models/smollm2-135m-instruct-q4_1.gguf}"
par="${2:-16}"
threads="${THREADS:-$(nproc)}"
(cd "$root" && cargo build --release -q -p torchless)
wait_up() { for _ in $(seq 1 120); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.5; done; echo "server at $1 did not come up" >&2; return 1; }
load() { python3 "$root/scripts/serve_load.py" "$1" --clients 1 4 16 --requests "${REQUESTS:-2}" --max-tokens "${MAX_TOKENS:-64}"; }

echo "== torchless serve (--parallel $par)"
"$root/target/release/torchless" serve "$model" --port 18080 --parallel "$par" --threads "$threads" --max-seq-len 1024 2>/dev/null &
pid=$!; trap 'kill $pid 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:18080 && load http://127.0.0.1:18080
kill $pid; wait $pid 2>/dev/null || true

if [[ -n "${LLAMA_SERVER:-}" ]]; then
    echo "== llama-server (--parallel $par)"
    # --no-repack: llama.cpp's AMX repack path crashes on some hosts (see BENCHMARKS.md).
    LD_LIBRARY_PATH="$(dirname "$LLAMA_SERVER")" "$LLAMA_SERVER" -m "$model" --port 18081 \
        --parallel "$par" -t "$threads" -c $((1024 * par)) ${LLAMA_SERVER_ARGS:---no-repack} >/dev/null 2>&1 &
    pid=$!
    wait_up http://127.0.0.1:18081 && load http://127.0.0.1:18081
    kill $pid; wait $pid 2>/dev/null || true
fi

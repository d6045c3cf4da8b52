#!/usr/bin/env bash
# Runs llama-bench and `torchless bench` on the same GGUF files with the same thread count
# (pp128 and tg64 by default) and prints a markdown table of tokens/s and their ratio
# (torchless / llama.cpp; above 1 means torchless is faster).
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/bench-vs-llama-cpp.sh [MODEL.gguf ...]
#
# Environment: LLAMA_BENCH (required), THREADS (default 2), PP (128), TG (64), REPS (3),
# TORCHLESS (a torchless binary; default: built here with cargo --release).
# Defaults to the two real models under ${TORCHLESS_CACHE:-~/.cache/torchless}/models.
set -euo pipefail

if [[ -z "${LLAMA_BENCH:-}" ]]; then
    echo "error: set LLAMA_BENCH to a llama-bench binary" >&2
    echo "hint: /work/shared/tools/build-llama-cpp.sh builds llama.cpp (build/bin/llama-bench)" >&2
    exit 2
fi
if [[ ! -x "$LLAMA_BENCH" ]]; then
    echo "error: LLAMA_BENCH=$LLAMA_BENCH is not an executable" >&2
    exit 2
fi

THREADS="${THREADS:-2}"
PP="${PP:-128}"
TG="${TG:-64}"
REPS="${REPS:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${TORCHLESS:-}" ]]; then
    (cd "$root" && cargo build --release -q -p torchless) >&2
    TORCHLESS="${CARGO_TARGET_DIR:-$root/target}/release/torchless"
fi

if [[ $# -gt 0 ]]; then
    models=("$@")
else
    cache="${TORCHLESS_CACHE:-$HOME/.cache/torchless}/models"
    models=("$cache/smollm2-135m-instruct-q4_1.gguf" "$cache/gemma3-270m-q4_k_m.gguf")
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$LLAMA_BENCH" --version >"$tmp/version" 2>&1 || true
i=0
for m in "${models[@]}"; do
    [[ -f "$m" ]] || { echo "error: $m not found" >&2; exit 1; }
    echo "== $(basename "$m"): llama-bench" >&2
    "$LLAMA_BENCH" -m "$m" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json \
        >"$tmp/llama.$i.json" 2>"$tmp/llama.$i.err" \
        || { cat "$tmp/llama.$i.err" >&2; exit 1; }
    echo "== $(basename "$m"): torchless bench" >&2
    "$TORCHLESS" bench "$m" --threads "$THREADS" -p "$PP" -n "$TG" -r "$REPS" --json \
        >"$tmp/torchless.$i.json"
    echo "$m" >"$tmp/model.$i"
    i=$((i + 1))
done

python3 - "$tmp" "$i" "$THREADS" "$PP" "$TG" <<'PY'
import json, os, sys

tmp, n, threads, pp, tg = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
version = open(os.path.join(tmp, "version")).read().strip().splitlines()
print(f"llama.cpp: {' '.join(version[-2:]) if version else 'unknown'}")
print(f"threads: {threads}\n")
print("| model | test | llama.cpp t/s | torchless t/s | ratio |")
print("| --- | --- | ---: | ---: | ---: |")
for i in range(n):
    model = os.path.basename(open(os.path.join(tmp, f"model.{i}")).read().strip())
    ref = json.load(open(os.path.join(tmp, f"llama.{i}.json")))
    ours = json.load(open(os.path.join(tmp, f"torchless.{i}.json")))
    simd = ours.get("simd")
    for test, n_tok in (("pp", pp), ("tg", tg)):
        if n_tok == 0:
            continue
        rows = [r for r in ref
                if (r["n_prompt"], r["n_gen"]) == ((n_tok, 0) if test == "pp" else (0, n_tok))]
        if not rows:
            sys.exit(f"llama-bench output has no {test}{n_tok} row for {model}")
        r = rows[0]
        t = ours[test]
        ratio = t["mean_tps"] / r["avg_ts"]
        print(f"| {model} | {test}{n_tok} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} "
              f"| {t['mean_tps']:.2f} ± {t['stddev_tps']:.2f} | {ratio:.2f} |")
print(f"\ntorchless simd: {simd}; ratio = torchless / llama.cpp")
PY

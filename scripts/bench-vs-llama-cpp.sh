#!/usr/bin/env bash
# Runs llama-bench and `torchless bench` on the same GGUF files with the same thread count
# (pp128 and tg64 by default) and prints a markdown table of tokens/s and their ratio
# (torchless / llama.cpp; above 1 means torchless is faster).
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/bench-vs-llama-cpp.sh [MODEL.gguf ...]
#
# Environment: LLAMA_BENCH (required), THREADS (default 2), PP (128), TG (64), REPS (3),
# TORCHLESS (a torchless binary; default: built here with cargo --release), MEMBW (read
# bandwidth in GB/s for the tg roofline column; default: measured with the membw example).
# Peak RSS of each whole benchmark process is reported too (both engines mmap the file).
# Defaults to the two real models under ${TORCHLESS_CACHE:-~/.cache/torchless}/models.
set -euo pipefail

if [[ -z "${LLAMA_BENCH:-}" ]]; then
    echo "error: set LLAMA_BENCH to a llama-bench binary" >&2
    echo "hint: BENCHMARKS.md shows how to build llama.cpp (build/bin/llama-bench)" >&2
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
if [[ -z "${MEMBW:-}" ]]; then
    (cd "$root" && cargo build --release -q -p torchless-models --example membw) >&2
    MEMBW="$("${CARGO_TARGET_DIR:-$root/target}/release/examples/membw" "$THREADS" 512 |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["gb_per_s"])')"
fi

# Runs a command and writes the peak RSS (KiB) of its process tree to $1.
peak_rss() {
    local out="$1"
    shift
    python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(r.returncode)' "$out" "$@"
}

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
    peak_rss "$tmp/llama.$i.rss" "$LLAMA_BENCH" -m "$m" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json \
        >"$tmp/llama.$i.json" 2>"$tmp/llama.$i.err" \
        || { cat "$tmp/llama.$i.err" >&2; exit 1; }
    echo "== $(basename "$m"): torchless bench" >&2
    peak_rss "$tmp/torchless.$i.rss" "$TORCHLESS" bench "$m" --threads "$THREADS" -p "$PP" -n "$TG" -r "$REPS" --json \
        >"$tmp/torchless.$i.json"
    echo "$m" >"$tmp/model.$i"
    i=$((i + 1))
done

python3 - "$tmp" "$i" "$THREADS" "$PP" "$TG" "$MEMBW" <<'PY'
import json, os, sys

tmp, n, threads, pp, tg = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
membw = float(sys.argv[6])
version = open(os.path.join(tmp, "version")).read().strip().splitlines()
print(f"llama.cpp: {' '.join(version[-2:]) if version else 'unknown'}")
print(f"threads: {threads}; read bandwidth: {membw:.1f} GB/s\n")
print("| model | test | llama.cpp t/s | torchless t/s | ratio | roofline use (llama.cpp / torchless) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
rss_rows = []
for i in range(n):
    model = os.path.basename(open(os.path.join(tmp, f"model.{i}")).read().strip())
    ref = json.load(open(os.path.join(tmp, f"llama.{i}.json")))
    ours = json.load(open(os.path.join(tmp, f"torchless.{i}.json")))
    simd = ours.get("simd")
    size = os.path.getsize(open(os.path.join(tmp, f"model.{i}")).read().strip())
    # A decode step streams every weight once: tokens/s <= bandwidth / file size.
    roof = membw * 1e9 / size
    rss = [int(open(os.path.join(tmp, f"{e}.{i}.rss")).read()) / 1024 for e in ("llama", "torchless")]
    rss_rows.append((model, size / 2**20, rss[0], rss[1]))
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
        use = (f"{r['avg_ts'] / roof:.0%} / {t['mean_tps'] / roof:.0%}" if test == "tg" else "")
        print(f"| {model} | {test}{n_tok} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} "
              f"| {t['mean_tps']:.2f} ± {t['stddev_tps']:.2f} | {ratio:.2f} | {use} |")
print(f"\ntorchless simd: {simd}; ratio = torchless / llama.cpp; roofline = {membw:.1f} GB/s / file size")
print("\n| model | file MiB | llama.cpp peak RSS MiB | torchless peak RSS MiB | ratio |")
print("| --- | ---: | ---: | ---: | ---: |")
for model, mib, ref_rss, our_rss in rss_rows:
    print(f"| {model} | {mib:.0f} | {ref_rss:.0f} | {our_rss:.0f} | {our_rss / ref_rss:.2f} |")
PY

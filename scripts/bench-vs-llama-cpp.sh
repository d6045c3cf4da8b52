#!/usr/bin/env bash
# Runs llama-bench and `torchless bench` on the same GGUF files with the same thread count
# (pp128 and tg64 by default) and prints a markdown table of tokens/s and their ratio
# (torchless / llama.cpp; above 1 means torchless is faster).
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/bench-vs-llama-cpp.sh [MODEL.gguf ...]
#
# The two engines alternate, model by model and depth by depth, ROUNDS times; the table gives
# each engine's median over the rounds (every round's value in parentheses) and the ratio of
# the medians. Measure on a quiet machine (nothing else running, load average under 1).
#
# Environment: LLAMA_BENCH (required), THREADS (default 2), PP (128), TG (64), REPS (3),
# ROUNDS (1), DEPTHS (tokens already in the KV cache, llama-bench's -d; default "0"),
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

ROUNDS="${ROUNDS:-1}"
DEPTHS="${DEPTHS:-0}"
"$LLAMA_BENCH" --version >"$tmp/version" 2>&1 || true
for m in "${models[@]}"; do
    [[ -f "$m" ]] || { echo "error: $m not found" >&2; exit 1; }
done
for round in $(seq 1 "$ROUNDS"); do
    i=0
    for m in "${models[@]}"; do
        echo "$m" >"$tmp/model.$i"
        for d in $DEPTHS; do
            run="$i.$d.$round"
            echo "== round $round: $(basename "$m") at depth $d: llama-bench" >&2
            peak_rss "$tmp/llama.$run.rss" "$LLAMA_BENCH" -m "$m" -t "$THREADS" -p "$PP" -n "$TG" \
                -d "$d" -r "$REPS" -o json >"$tmp/llama.$run.json" 2>"$tmp/llama.$run.err" \
                || { cat "$tmp/llama.$run.err" >&2; exit 1; }
            echo "== round $round: $(basename "$m") at depth $d: torchless bench" >&2
            peak_rss "$tmp/torchless.$run.rss" "$TORCHLESS" bench "$m" --threads "$THREADS" \
                -p "$PP" -n "$TG" -d "$d" -r "$REPS" --json >"$tmp/torchless.$run.json"
        done
        i=$((i + 1))
    done
done

python3 - "$tmp" "$i" "$THREADS" "$PP" "$TG" "$MEMBW" "$ROUNDS" "$DEPTHS" <<'PY'
import json, os, statistics, sys

tmp, n, threads, pp, tg = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
membw, rounds, depths = float(sys.argv[6]), int(sys.argv[7]), sys.argv[8].split()
version = open(os.path.join(tmp, "version")).read().strip().splitlines()
print(f"llama.cpp: {' '.join(version[-2:]) if version else 'unknown'}")
print(f"threads: {threads}; read bandwidth: {membw:.1f} GB/s; rounds: {rounds}\n")
print("| model | test | llama.cpp t/s | torchless t/s | ratio | roofline use (llama.cpp / torchless) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")


def cell(values):
    med = statistics.median(values)
    runs = f" ({', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
    return med, f"{med:.2f}{runs}"


rss_rows = []
simd = None
for i in range(n):
    path = open(os.path.join(tmp, f"model.{i}")).read().strip()
    model = os.path.basename(path)
    size = os.path.getsize(path)
    # A decode step streams every weight once: tokens/s <= bandwidth / file size.
    roof = membw * 1e9 / size
    peak = {"llama": 0, "torchless": 0}
    for d in depths:
        refs, ours = [], []
        for r in range(1, rounds + 1):
            run = f"{i}.{d}.{r}"
            refs.append(json.load(open(os.path.join(tmp, f"llama.{run}.json"))))
            ours.append(json.load(open(os.path.join(tmp, f"torchless.{run}.json"))))
            for e in peak:
                kib = int(open(os.path.join(tmp, f"{e}.{run}.rss")).read())
                peak[e] = max(peak[e], kib / 1024)
        simd = ours[0].get("simd")
        for test, n_tok in (("pp", pp), ("tg", tg)):
            if n_tok == 0:
                continue
            want = (n_tok, 0) if test == "pp" else (0, n_tok)
            ref_ts = []
            for ref in refs:
                rows = [x for x in ref if (x["n_prompt"], x["n_gen"]) == want]
                if not rows:
                    sys.exit(f"llama-bench output has no {test}{n_tok} row for {model}")
                ref_ts.append(rows[0]["avg_ts"])
            our_ts = [o[test]["mean_tps"] for o in ours]
            (ref_med, ref_cell), (our_med, our_cell) = cell(ref_ts), cell(our_ts)
            at = f" @ d{d}" if d != "0" else ""
            use = f"{ref_med / roof:.0%} / {our_med / roof:.0%}" if test == "tg" and d == "0" else ""
            print(f"| {model} | {test}{n_tok}{at} | {ref_cell} | {our_cell} | {our_med / ref_med:.2f} | {use} |")
    rss_rows.append((model, size / 2**20, peak["llama"], peak["torchless"]))
print(f"\ntorchless simd: {simd}; ratio = torchless / llama.cpp (medians); roofline = {membw:.1f} GB/s / file size")
print("\n| model | file MiB | llama.cpp peak RSS MiB | torchless peak RSS MiB | ratio |")
print("| --- | ---: | ---: | ---: | ---: |")
for model, mib, ref_rss, our_rss in rss_rows:
    print(f"| {model} | {mib:.0f} | {ref_rss:.0f} | {our_rss:.0f} | {our_rss / ref_rss:.2f} |")
PY

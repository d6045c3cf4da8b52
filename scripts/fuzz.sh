#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain (fuzz/README.md):
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     e.g. scripts/fuzz.sh template 600
# Builds the fuzz targets with SanitizerCoverage (no nightly needed: no sanitizer, panics and
# runaway memory are the findings), then runs each from a copy of its seeds in fuzz/seeds for
# SECONDS (default 60), two at a time. A finding is written to target/fuzz/findings/ and the
# script fails naming it. scripts/test.sh runs all four briefly so a regression shows in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
which=${1:-all}
secs=${2:-60}
targets=(parse model vocab template)
[ "$which" = all ] || targets=("$which")

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the instrumentation away from build scripts and proc macros.
export CARGO_TARGET_DIR="$root/target/fuzz"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")

findings="$root/target/fuzz/findings"
mkdir -p "$findings"
run() {
  local t=$1 max_len=4096 corpus="$root/target/fuzz/corpus/$1" log="$root/target/fuzz/$1.log"
  [ "$t" = parse ] && max_len=8192
  # Each template the guard stops leaves its render thread parked with up to its 2 MiB budget
  # (fuzz/README.md), so a long template run grows by a few MB per distinct runaway found.
  local rss=2048
  [ "$t" = template ] && rss=8192
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$t"/* "$corpus"/
  if "$CARGO_TARGET_DIR/$host/release/$t" "$corpus" -max_len=$max_len -timeout=10 \
      -rss_limit_mb=$rss -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$findings/$t-" >"$log" 2>&1; then
    echo "fuzz $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${secs}s, no finding"
  else
    echo "fuzz $t: FINDING (log: $log)" >&2
    grep -E '^(==|SUMMARY|thread|artifact_prefix|Test unit)' "$log" | head -20 >&2
    return 1
  fi
}
status=0
pids=()
for t in "${targets[@]}"; do
  run "$t" & pids+=($!)
  # Two at a time: one per core.
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status

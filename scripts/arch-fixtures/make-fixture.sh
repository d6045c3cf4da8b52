#!/usr/bin/env bash
# Makes one tiny reference fixture end to end:
#   NAME.gguf        make-fixture.py preset NAME (derived from a shared base fixture)
#   NAME.json        llama.cpp reference: kv=f32 fa=off mode=full
#   NAME.f16kv.json  llama.cpp defaults:  kv=f16 fa=auto mode=top5 repack=off
#   NAME.log         llama.cpp's view of the file: stderr of the f32 run with -v, filtered like the
#                    shared fixtures' logs (print_info / load_tensors / llama_context / llama_kv_cache
#                    lines, incl. their warnings, + load_arch_hparams warnings)
# and cross-checks NAME.json with np_ref.py (float64 numpy), printing the max abs difference.
#
#   scripts/arch-fixtures/make-fixture.sh NAME [OUT_DIR]     (OUT_DIR: crates/models/tests/data)
#   python3 scripts/arch-fixtures/make-fixture.py --list     (the presets)
#
# Env: LLAMA_CPP_DIR (default ~/.cache/torchless-ref/llama.cpp; built by build-llama-cpp.sh if
# missing), FIXTURE_BASE_DIR (base fixtures, default /work/shared/fixtures/arch).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
name=${1:?usage: make-fixture.sh NAME [OUT_DIR]}
out=${2:-$root/crates/models/tests/data}
L=${LLAMA_CPP_DIR:-$HOME/.cache/torchless-ref/llama.cpp}
export LLAMA_CPP_DIR="$L"

# 1. llama.cpp (cached) + the harness
# only libllama + ggml are needed here; build everything (cached) if the library is missing
[ -e "$L/build/bin/libllama.so" ] && [ -f "$L/include/llama.h" ] || "$here/build-llama-cpp.sh" "$L" >/dev/null
python3 -c 'import numpy' 2>/dev/null || pip install -q numpy
ref="$L/build/bin/ref_logits"
if [ ! -x "$ref" ] || [ "$here/ref_logits.c" -nt "$ref" ]; then
    gcc -O2 -o "$ref" "$here/ref_logits.c" -I "$L/include" -I "$L/ggml/include" -L "$L/build/bin" \
        -lllama -lggml -lggml-base -lm -Wl,-rpath,"$L/build/bin" -DLLAMA_CPP_BUILD='"b11434-pypi-sdist"'
fi

# 2. the GGUF
mkdir -p "$out"
python3 "$here/make-fixture.py" "$name" "$out/$name.gguf" 2> >(grep -v '^INFO:' >&2)

# 3. references (run inside OUT so "model" in the JSON is the bare file name).  repack=off: weights
# stay in plain CPU buffers (no CPU_REPACK/AMX repacking) -- same numbers on every x86 host, and
# b11434's AMX Q8_0 matmul segfaults on AMX hosts with these tiny models.
cd "$out"
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
"$ref" "$name.gguf" "$name.json" kv=f32 fa=off mode=full repack=off -v 2>"$raw" || { cat "$raw" >&2; exit 1; }
# keep llama.cpp's interpretation (print_info, is_swa per layer, context/KV cache set-up, warnings);
# drop the loader's metadata dump, per-tensor lines, buffer sizes and graph/scheduler chatter
keep='^(print_info|load_tensors|llama_context|llama_kv_cache(_iswa)?|load_arch_hparams):'
drop='loading model tensors|model buffer size|constructing llama_context|n_seq_max|n_batch |n_ubatch|kv_unified'
drop+='|n_rs_seq|n_outputs_max|output buffer size|KV buffer size|n_rot_[kv] =|enumerating backends|backend_ptrs'
drop+='|graph nodes|graph splits|compute buffer size|reserving|~llama_context'
grep -E "$keep" "$raw" | grep -v -E "$drop" > "$name.log" || true
"$ref" "$name.gguf" "$name.f16kv.json" kv=f16 fa=auto mode=top5 repack=off

python3 - "$name.json" "$name.f16kv.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("n_nonfinite",):
    assert a[k] == 0 and b[k] == 0, f"{k}: {a[k]} {b[k]}"
d = next((i for i, (x, y) in enumerate(zip(a["generated_ids"], b["generated_ids"])) if x != y), None)
print(f"greedy f32: {a['generated_ids']}")
print(f"min greedy margin {min(a['greedy_margins']):.4g}; f16kv greedy ids "
      + ("identical" if d is None else f"diverge at step {d}"))
w = a.get("log_warnings", "").strip()
print("llama.cpp warnings:\n  " + w.replace("\n", "\n  ") if w else "llama.cpp warnings: none")
EOF

# 4. numpy cross-check
echo "np_ref: $(python3 "$here/np_ref.py" "$name.gguf" "$name.json")"
ls -l "$out/$name".{gguf,json,f16kv.json,log}

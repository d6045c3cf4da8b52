#!/usr/bin/env bash
# The aarch64 goldens: ggml (the llama.cpp checkout of scripts/arch-fixtures) cross-built
# with Debian's aarch64-linux-gnu-gcc/g++ (12) twice, for -march=armv8.2-a+dotprod (the
# `dotprod` level: sdot, no i8mm, no SVE, no fp16 vector arithmetic) and -march=armv8-a
# (the `neon` level), static libraries; vec_dot_hash.c linked against each and run under
# qemu-aarch64-static for every type and shape below. Prints one line per run,
# `LEVEL TYPE K M N act 0x... dot 0x...`: crates/quant/tests/data/aarch64-vec-dot.txt, which
# crates/quant/src/aarch64/goldens.rs checks (level `dotprod-repack`: a whole mul_mat with the
# weights in CPU_REPACK, the types that build repacks; `LEVEL-plain`: a whole mul_mat with the
# weights in an ordinary buffer, the types that are not repacked).
# Needs: gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static cmake.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
L="${LLAMA_CPP:-$HOME/.cache/torchless-ref/llama.cpp}"
out="${GGML_ARM_DIR:-$here/../../target/ggml-arm}"
TYPES="${TYPES:-F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS TQ1_0 TQ2_0}"
for v in dotprod:armv8.2-a+dotprod neon:armv8-a; do
  level=${v%%:*} arch=${v#*:}
  B="$out/$level"
  if [ ! -f "$B/ggml/src/libggml-cpu.a" ]; then
    cmake -S "$L" -B "$B" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
      -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH="$arch" \
      -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
      -DGGML_CPU_KLEIDIAI=OFF >/dev/null
    cmake --build "$B" --target ggml-cpu ggml-base ggml -j2 >/dev/null
  fi
  aarch64-linux-gnu-g++ -O2 -static -I "$L/ggml/include" -o "$B/vec_dot_hash" -x c "$here/vec_dot_hash.c" \
    -x none "$B/ggml/src/libggml.a" "$B/ggml/src/libggml-cpu.a" "$B/ggml/src/libggml-base.a" -lm -lpthread
  for ty in $TYPES; do
    case $ty in
      Q2_K|Q3_K|Q4_K|Q5_K|Q6_K|IQ4_XS|TQ1_0|TQ2_0) shapes="256:8:3 768:5:2" ;;
      *) shapes="32:8:3 96:7:2 512:6:3 4096:3:2" ;;
    esac
    for s in $shapes; do
      IFS=: read -r k m n <<<"$s"
      echo "$level $ty $k $m $n $(qemu-aarch64-static "$B/vec_dot_hash" "$ty" "$k" "$m" "$n")"
    done
  done
  # Whole matmuls with the weights in an ordinary buffer, for the types this build does not
  # repack (on ARM they go through vec_dot, also in batches: no tiled K-quant matmul there;
  # F16 with rows % 4 != 0 so that llamafile's sgemm stays out).
  plain="F32 F16 BF16 Q4_1 Q5_0 Q5_1 Q2_K Q3_K IQ4_XS TQ1_0 TQ2_0"
  [ "$level" = neon ] && plain="$plain Q4_0 Q8_0 IQ4_NL Q4_K Q5_K Q6_K"
  for ty in $plain; do
    case $ty in
      Q?_K|IQ4_XS|TQ?_0) shapes="256:8:9 512:6:3" ;;
      *) shapes="64:7:9 96:7:3" ;;
    esac
    for s in $shapes; do
      IFS=: read -r k m n <<<"$s"
      echo "$level-plain $ty $k $m $n $(qemu-aarch64-static "$B/vec_dot_hash" "$ty" "$k" "$m" "$n" plain 2>/dev/null)"
    done
  done
  # The types the dotprod build repacks (4x4, K-quants 8x4), whole matmuls: gemm and gemv
  # token splits.
  if [ "$level" = dotprod ]; then
    for ty in Q4_0 IQ4_NL Q8_0 Q4_K Q5_K Q6_K; do
      case $ty in
        Q?_K) shapes="256:8:1 512:16:4 768:8:7 256:8:6" ;;
        *) shapes="64:8:1 96:12:4 512:8:7 4096:4:6" ;;
      esac
      for s in $shapes; do
        IFS=: read -r k m n <<<"$s"
        echo "dotprod-repack $ty $k $m $n $(qemu-aarch64-static "$B/vec_dot_hash" "$ty" "$k" "$m" "$n" repack 2>/dev/null)"
      done
    done
  fi
done

#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang++, ASan + UBSan, the whole library instrumented for
# coverage with -fsanitize=fuzzer-no-link). Separate from the gcc build. Usage: tests/fuzz/build.sh [target...]
# (targets: safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text npy).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${FUZZ_BUILD_DIR:-build-fuzz}
ALL="safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text npy"
TARGETS=${*:-$ALL}

need=()
command -v clang++ >/dev/null || need+=(clang)
[ -n "$(find /usr/lib/llvm-*/lib/clang -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -1)" ] || need+=(libclang-rt-dev)
[ -e /usr/lib/llvm-14/lib/libomp.so ] || [ -n "$(ls /usr/lib/llvm-*/lib/libomp.so 2>/dev/null)" ] || need+=(libomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz build: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Quick mode (FUZZ_QUICK_FROM=<gcc build dir>, output in $B, e.g. build-fuzz-quick): only the fuzz target and
# the reader sources it exercises are compiled with clang (coverage + ASan + UBSan); the rest of qforge is
# linked from the gcc build's static libraries (not instrumented). Minutes instead of a full instrumented
# build, for machines where that is too slow; the full build above remains the reference.
if [ -n "${FUZZ_QUICK_FROM:-}" ]; then
  G=$FUZZ_QUICK_FROM
  declare -A SRC=(
    [safetensors]="engine/safetensors.cpp" [spec]="nn/spec.cpp nn/recurrent.cpp" [aimet_config]="quant/config.cpp"
    [encodings]="quant/encodings_io.cpp quant/encoding.cpp" [quantsim_json]="quant/quant_dir.cpp"
    [checkpoint_state]="train/checkpoint.cpp" [bundle]="quant/runtime/program.cpp"
    [idx]="data/idx.cpp data/io_util.cpp" [cifar]="data/cifar.cpp data/io_util.cpp" [text]="data/text.cpp data/io_util.cpp" [npy]="data/npy.cpp data/npz.cpp data/tensors.cpp")
  FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
         -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread -Wno-unknown-warning-option)
  mkdir -p "$B/obj" "$B/tests/fuzz"
  LIBS=()
  for l in train/libqforge_train.a quant/runtime/libqforge_runtime.a quant/ptq/libqforge_ptq.a quant/libqforge_quant.a \
           data/libqforge_data.a nn/libqforge_nn.a engine/libqforge_engine.a engine/kernels/libqforge_kernels.a; do
    [ -f "$G/$l" ] && LIBS+=("$G/$l")
  done
  for t in $TARGETS; do
    objs=()
    for f in tests/fuzz/fuzz_$t.cpp ${SRC[$t]}; do
      o="$B/obj/$(echo "$f" | tr / _).o"
      [ "$f" = "tests/fuzz/fuzz_$t.cpp" ] && extra=() || extra=(-fsanitize=fuzzer-no-link)
      if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ tests/fuzz/fuzz_util.hpp -nt "$o" ]; then
        echo "fuzz quick: $f" >&2
        clang++ "${FLAGS[@]}" -fsanitize=fuzzer-no-link "${extra[@]}" -c "$f" -o "$o"
      fi
      objs+=("$o")
    done
    clang++ -fsanitize=fuzzer,address,undefined "${objs[@]}" -Wl,--start-group "${LIBS[@]}" -Wl,--end-group \
      -lfmt -lz -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas /usr/lib/x86_64-linux-gnu/libgomp.so.1 -lpthread \
      -o "$B/tests/fuzz/fuzz_$t"
  done
  exit 0
fi

if [ ! -f "$B/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$B" --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
fi
ninja -C "$B" -j"${JOBS:-2}" $(for t in $TARGETS; do echo "tests/fuzz/fuzz_$t"; done)

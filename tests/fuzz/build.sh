#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang++, ASan + UBSan, the whole library instrumented for
# coverage with -fsanitize=fuzzer-no-link). Separate from the gcc build. Usage: tests/fuzz/build.sh [target...]
# (targets: safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${FUZZ_BUILD_DIR:-build-fuzz}
ALL="safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text"
TARGETS=${*:-$ALL}

need=()
command -v clang++ >/dev/null || need+=(clang)
[ -n "$(find /usr/lib/llvm-*/lib/clang -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -1)" ] || need+=(libclang-rt-dev)
[ -e /usr/lib/llvm-14/lib/libomp.so ] || [ -n "$(ls /usr/lib/llvm-*/lib/libomp.so 2>/dev/null)" ] || need+=(libomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz build: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -f "$B/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$B" --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
fi
ninja -C "$B" -j"${JOBS:-2}" $(for t in $TARGETS; do echo "tests/fuzz/fuzz_$t"; done)

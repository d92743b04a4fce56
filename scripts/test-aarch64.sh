#!/usr/bin/env bash
# Cross-builds qforge for aarch64 (Debian's g++-aarch64-linux-gnu, arm64 multiarch -dev packages,
# scripts/cross/aarch64-linux-gnu.ini) in build-aarch64 and runs under qemu-user (`qemu-aarch64 -cpu max`,
# which has the dot-product extension):
#   1. the kernel, runtime (int8 runtime == exact simulation) and PyTorch-fixture tests, once per ARM ISA
#      (QFORGE_ISA=neondot, neon, ref; see Note [aarch64 subsets] for what the second and third runs skip);
#   2. the byte-identity check: zoo models trained and quantized on x86-64 (the native build/apps/qforge
#      that scripts/test.sh builds), `qforge eval --mode int8 --save-logits` on x86-64 and under qemu on
#      the same model directory, and `cmp` of the two logits files (one check per model and ARM ISA).
# Installs what it needs (run as root or with sudo). Prints "N passed, M failed" as its last line (doctest
# case counts summed, plus 1 per script check); exit status 0 iff nothing failed.
#
# Usage: bash scripts/test-aarch64.sh
#   QFORGE_X86_BIN  native qforge for the byte-identity check (default build/apps/qforge; built with
#                   `ninja -C build apps/qforge` if missing and build/ is configured)
#   JOBS            ninja jobs for the cross build (default 2)
#
# Note [aarch64 subsets]: under emulation the suite is much slower than native (measured on a quiet
# machine: tests_kernels ~10 s per ISA, tests_runtime ~90 s), so
#   - tests_kernels runs whole for every ARM ISA;
#   - tests_runtime runs whole for neondot; for neon and ref only the cases that use the dispatched ISA
#     ("runtime: int8 runtime equals the exact simulation*", "runtime: per-channel weights*").
#   - tests_nn runs only test_pytorch_fixtures.cpp (PyTorch fixtures), once (float path: the kernels'
#     ISA only changes the shifted-window conv, which tests_kernels covers per ISA).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-aarch64
JOBS=${JOBS:-2}
# Note [qemu loader]: the programs run against the arm64 multiarch libraries (libc6:arm64 etc., pulled in by
# the -dev packages), so the loader must be the multiarch one too: -L / (QEMU_LD_PREFIX=/). With the cross
# sysroot (-L /usr/aarch64-linux-gnu) its older ld.so met the newer multiarch libc.so.6 and every
# program spun forever at start-up.
SYSROOT=/
export QEMU_LD_PREFIX=$SYSROOT
QEMU=(qemu-aarch64 -cpu max -L "$SYSROOT")
source scripts/lib/doctest_tally.sh
passed=0
failed=0
start=$(date +%s)

finish() {
  echo "== aarch64: $(($(date +%s) - start)) s"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# ---- 1. toolchain and arm64 libraries ------------------------------------------------------------------
PACKAGES=(g++-aarch64-linux-gnu qemu-user libopenblas-dev:arm64 libfmt-dev:arm64 zlib1g-dev:arm64
          libxsimd-dev:arm64 libgomp1:arm64 meson ninja-build pkg-config ccache
          libxtensor-dev libxsimd-dev nlohmann-json3-dev libcxxopts-dev doctest-dev)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  export DEBIAN_FRONTEND=noninteractive
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "installing the aarch64 toolchain failed"
    failed=$((failed + 1))
    finish
  fi
fi
# xtensor is header-only, but Debian's arm64 libxtensor-dev cannot be installed beside the amd64 one
# (xtl-dev is not Multi-Arch): the cross file finds this .pc instead (scripts/cross/aarch64-linux-gnu.ini).
pcdir=/usr/local/lib/aarch64-linux-gnu/pkgconfig
cmp -s scripts/cross/pkgconfig/xtensor.pc "$pcdir/xtensor.pc" ||
  $SUDO install -D -m 644 scripts/cross/pkgconfig/xtensor.pc "$pcdir/xtensor.pc"

# ---- 2. cross build (only what runs here) --------------------------------------------------------------
TARGETS=(tests/engine/kernels/tests_kernels tests/quant/runtime/tests_runtime tests/nn/tests_nn apps/qforge)
echo "== cross build ($BUILD)"
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup --cross-file scripts/cross/aarch64-linux-gnu.ini "$BUILD" --buildtype=release >"/tmp/qforge-aarch64-setup.log" 2>&1 ||
    { tail -n 30 /tmp/qforge-aarch64-setup.log; echo "meson setup for aarch64 failed"; failed=$((failed + 1)); finish; }
fi
if ! ninja -C "$BUILD" -j"$JOBS" "${TARGETS[@]}" >"/tmp/qforge-aarch64-build.log" 2>&1; then
  grep -E 'error|FAILED' /tmp/qforge-aarch64-build.log | head -n 30
  echo "aarch64 build failed"
  failed=$((failed + 1))
  finish
fi
echo "built in $(($(date +%s) - start)) s"
logdir=$BUILD/test-logs
mkdir -p "$logdir"
export QFORGE_SOURCE_ROOT=$ROOT

# ---- 3. doctest executables under qemu -----------------------------------------------------------------
# run_doctest LABEL EXE [doctest args...]; QFORGE_ISA from the caller's environment.
run_doctest() {
  local label=$1 exe=$2
  shift 2
  local log="$logdir/$label.log" t0
  t0=$(date +%s)
  echo "== $label"
  "${QEMU[@]}" "$exe" --no-intro=true "$@" >"$log" 2>&1
  local rc=$?
  grep -v '^\[doctest\] \(doctest version\|run with\)' "$log" | tail -n 25
  doctest_tally "$label" "$log" "$rc"
  echo "($(($(date +%s) - t0)) s)"
}

K=$BUILD/tests/engine/kernels/tests_kernels
R=$BUILD/tests/quant/runtime/tests_runtime
N=$BUILD/tests/nn/tests_nn
dispatched_runtime_cases='runtime: int8 runtime equals the exact simulation*,runtime: per-channel weights*'
QFORGE_ISA=neondot run_doctest "tests_kernels[neondot]" "$K"
QFORGE_ISA=neondot run_doctest "tests_runtime[neondot]" "$R"
QFORGE_ISA=neondot run_doctest "tests_nn[pytorch-fixtures]" "$N" --source-file='*test_pytorch_fixtures*'
for isa in neon ref; do
  QFORGE_ISA=$isa run_doctest "tests_kernels[$isa]" "$K"
  QFORGE_ISA=$isa run_doctest "tests_runtime[$isa]" "$R" --test-case="$dispatched_runtime_cases"
done

# ---- 4. byte identity: int8 logits on x86-64 == under qemu, same model directory ------------------------
X86=${QFORGE_X86_BIN:-$ROOT/build/apps/qforge}
if [ ! -x "$X86" ] && [ -f build/build.ninja ]; then ninja -C build -j"$JOBS" apps/qforge >/dev/null 2>&1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
check() {  # check DESCRIPTION -- command...: one script check
  local what=$1
  shift 2
  if "$@" >"$work/out.txt" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $what"
  else
    failed=$((failed + 1))
    echo "FAILED: $what"
    tail -n 5 "$work/out.txt"
  fi
}
if [ ! -x "$X86" ]; then
  echo "FAILED: no native qforge at $X86 (run scripts/build.sh first)"
  failed=$((failed + 1))
  finish
fi
echo "== byte identity of int8 logits: $X86 (x86-64) vs $BUILD/apps/qforge (aarch64, qemu)"
# Note [portable inputs]: the models are trained and quantized on x86-64 (synthetic digits are enough for
# that), but both sides evaluate real MNIST images (IDX bytes / 255: the same floats everywhere). The
# synthetic digits are drawn with libm's sin/cos, whose last bits differ between x86-64 glibc (FMA
# variants chosen at run time) and aarch64 glibc, so they are not the same input on the two machines:
# measured, their int8 logits differ while MNIST's are byte-identical.
data=synthetic:512
mnist=${QFORGE_DATA:-$ROOT/../shared/data}/mnist
if [ ! -d "$mnist" ]; then
  echo "SKIPPED: byte identity of int8 logits needs the MNIST test set in \$QFORGE_DATA/mnist or ../shared/data/mnist"
  finish
fi
eval_data=mnist:$mnist
for m in mnist-cnn dw-cnn resnet-tiny lstm gru; do
  d=$work/$m
  if ! "$X86" train --model "$m" --data "$data" --epochs 1 --batch-size 64 --seed 0 --threads 1 --progress none \
        --out "$d" >"$work/out.txt" 2>&1 ||
     ! "$X86" quantize --model-dir "$d" --out "$d-q" --calib-batches 2 --threads 1 >"$work/out.txt" 2>&1 ||
     ! "$X86" eval --model-dir "$d-q" --mode int8 --threads 1 --data "$eval_data" --save-logits "$d-x86.safetensors" \
        >"$work/out.txt" 2>&1; then
    failed=$((failed + 1))
    echo "FAILED: $m: train/quantize/eval on x86-64"
    tail -n 5 "$work/out.txt"
    continue
  fi
  for isa in neondot neon ref; do
    rm -f "$d-arm.safetensors"
    check "$m int8 logits: x86-64 == aarch64 $isa" -- bash -c '
      QFORGE_ISA='"$isa"' "$@" eval --model-dir "'"$d-q"'" --mode int8 --threads 1 --data "'"$eval_data"'" \
        --save-logits "'"$d-arm.safetensors"'" &&
      cmp "'"$d-x86.safetensors"'" "'"$d-arm.safetensors"'"' _ "${QEMU[@]}" "$ROOT/$BUILD/apps/qforge"
  done
done

finish

#!/usr/bin/env bash
# Sanitizer job: builds the unit tests of every reader of outside input and every kernel test, plus the fuzz
# replay drivers, with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, build-asan/), runs them and
# replays the committed fuzz corpus and regression inputs (tests/fuzz/{corpus,regressions}/<target>/)
# through every fuzz target. Ends with the line "N passed, M failed" (doctest test cases; one fuzz target's
# replay counts as one). Usage: scripts/test-sanitize.sh [--build-only]
#
# Leak checking is on. OpenBLAS and OpenMP keep per-thread buffers for the life of the process; the reports
# they cause are suppressed by name in tests/fuzz/lsan.supp (nothing of qforge's is suppressed).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${SANITIZE_BUILD_DIR:-build-asan}
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
if ! dpkg-query -W -f='${Status}' libasan8 2>/dev/null | grep -q "install ok installed" ||
   ! dpkg-query -W -f='${Status}' libubsan1 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libasan8 libubsan1 >&2
fi

FUZZ_TARGETS="safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text npy"
# tests_sanitize_readers (tests/fuzz/meson.build): every reader's tests and hostile-input suites in one
# executable, so the long numerics/training suites are not compiled with sanitizers.
EXES="tests/engine/kernels/tests_kernels tests/fuzz/tests_sanitize_readers"
# ccache may reuse objects compiled in another checkout of the same tree (a CI clone): debug info names the
# first checkout's directory, which does not change what the sanitizers report.
export CCACHE_NOHASHDIR=1
if [ ! -f "$B/build.ninja" ]; then
  cxx="g++"
  command -v ccache >/dev/null && cxx="ccache g++"
  CXX="$cxx" meson setup "$B" --buildtype=plain -Doptimization=1 -Ddebug=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dcpp_args="-fno-omit-frame-pointer -fno-sanitize-recover=undefined" >/dev/null ||
    { echo "configure failed"; echo "0 passed, 1 failed"; exit 1; }
fi
if ! ninja -C "$B" -j"${JOBS:-2}" $EXES $(for t in $FUZZ_TARGETS; do echo "tests/fuzz/fuzz_replay_$t"; done) >&2; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
[ "$build_only" -eq 1 ] && { echo "0 passed, 0 failed"; exit 0; }

export QFORGE_SOURCE_ROOT="$PWD"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
logdir=$B/test-logs
mkdir -p "$logdir"
source scripts/lib/doctest_tally.sh
passed=0
failed=0

# run_doctest LABEL EXE [doctest args...]
run_doctest() {
  local label=$1 exe=$2
  shift 2
  local log="$logdir/$label.log"
  echo "== $label"
  "$B/$exe" --no-intro=true "$@" >"$log" 2>&1
  local rc=$? reports=0
  if grep -q 'ERROR: \(Address\|Leak\)Sanitizer\|runtime error:' "$log"; then
    grep -m5 -A12 'ERROR: \(Address\|Leak\)Sanitizer\|runtime error:' "$log"
    reports=1
  fi
  doctest_tally "$label" "$log" "$rc" "$reports"
  grep '^\[doctest\] test cases:' "$log" | tail -n1
}

# Every kernel test (the int8 kernels against their scalar references, on the best ISA of this CPU); every
# reader's tests (specs, safetensors, IDX/CIFAR/text, AIMET config, encodings, quantsim.json, bundles).
run_doctest tests_kernels tests/engine/kernels/tests_kernels
run_doctest tests_sanitize_readers tests/fuzz/tests_sanitize_readers

# Fuzz corpus + regression replay.
for t in $FUZZ_TARGETS; do
  dirs=(tests/fuzz/corpus/$t)
  [ -d tests/fuzz/regressions/$t ] && dirs+=(tests/fuzz/regressions/$t)
  log="$logdir/fuzz_replay_$t.log"
  if "$B/tests/fuzz/fuzz_replay_$t" "${dirs[@]}" >"$log" 2>&1 &&
     ! grep -q 'ERROR: \(Address\|Leak\)Sanitizer\|runtime error:' "$log"; then
    echo "== fuzz replay $t: $(tail -n1 "$log")"
    passed=$((passed + 1))
  else
    echo "== fuzz replay $t FAILED"
    grep -m3 -B2 -A12 'ERROR: \|runtime error:\|terminate called' "$log" || tail -n 20 "$log"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

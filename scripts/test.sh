#!/usr/bin/env bash
# Builds qforge and runs every test: each doctest executable, then the ISA-dependent executables once more
# per other kernel ISA this CPU supports (QFORGE_ISA forces the dispatch), then the script tests (the CLI,
# the install test: a user program built against the installed library with pkg-config). Ends with the
# line "N passed, M failed" counting test cases (a script test counts as one).
#
# Then, unless --quick is given, the two slower jobs, each a script of its own that installs what it needs
# and ends with its own "N passed, M failed" (added to the totals here):
#   scripts/test-sanitize.sh  unit tests of every reader and kernel, and the fuzz corpus replay, built with
#                             AddressSanitizer + UndefinedBehaviorSanitizer;
#   scripts/test-aarch64.sh   the kernel, runtime and PyTorch-fixture tests cross-built for ARM64 and run
#                             under qemu-aarch64, and int8 outputs byte-identical to this machine's.
#
# ISA-dependent tests (Note [per-ISA runs]): the int8 kernels against their scalar references
# (tests_kernels), the integer runtime against the exact simulation (tests_runtime) and the f32 conv ops
# whose kernels are dispatched per ISA (tests_engine's conv2d cases). The full suite runs once on the best
# ISA; an AVX-512 machine thus also proves the AVX2, SSE4.2 and scalar paths, and an ARM machine NEON.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument $a (use --quick or --help)" >&2; exit 2 ;;
  esac
done
bash scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

export QFORGE_SOURCE_ROOT="$PWD"
source scripts/lib/doctest_tally.sh
passed=0
failed=0
logdir=build/test-logs
mkdir -p "$logdir"

# run_doctest LABEL EXE [doctest args...]; QFORGE_ISA from the caller's environment.
run_doctest() {
  local label=$1 exe=$2
  shift 2
  local log="$logdir/$label.log"
  echo "== $label"
  "$exe" --no-intro=true "$@" 2>&1 | tee "$log" | grep -v '^\[doctest\] \(doctest version\|run with\)' | tail -n 40
  doctest_tally "$label" "$log" "${PIPESTATUS[0]}"
}

for exe in $(find build/tests -maxdepth 3 -type f -name 'tests_*' -perm -u+x | sort); do
  run_doctest "$(basename "$exe")" "$exe"
done

# Note [per-ISA runs]
kernels_exe=$(find build/tests -type f -name tests_kernels -perm -u+x | head -n1)
runtime_exe=$(find build/tests -type f -name tests_runtime -perm -u+x | head -n1)
engine_exe=$(find build/tests -type f -name tests_engine -perm -u+x | head -n1)
isas=$("$kernels_exe" --list-isas)
best=$(echo "$isas" | head -n1)
echo "== kernel ISAs supported by this CPU: $(echo $isas) (full suite ran on $best)"
for isa in $(echo "$isas" | tail -n +2); do
  QFORGE_ISA=$isa run_doctest "tests_kernels[$isa]" "$kernels_exe"
  QFORGE_ISA=$isa run_doctest "tests_runtime[$isa]" "$runtime_exe"
  QFORGE_ISA=$isa run_doctest "tests_engine[$isa]" "$engine_exe" --test-case='conv2d*'
done

for t in tests/scripts/test_*.sh; do
  [ -f "$t" ] || continue
  echo "== $(basename "$t")"
  if bash "$t" >"$logdir/$(basename "$t").log" 2>&1; then
    grep '^REPORT: ' "$logdir/$(basename "$t").log" | sed 's/^REPORT: /   /'  # figures a script test states
    echo "ok"
    passed=$((passed + 1))
  else
    tail -n 30 "$logdir/$(basename "$t").log"
    echo "FAILED: $t"
    failed=$((failed + 1))
  fi
done

# run_job SCRIPT: a job script whose last line is "N passed, M failed".
run_job() {
  local script=$1 name log last p f
  name=$(basename "$script" .sh)
  log="$logdir/$name.log"
  echo "== $name"
  bash "$script" 2>&1 | tee "$log" | tail -n 25
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
  p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(echo "$last" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  if [ -z "$p" ]; then
    echo "$name printed no summary"
    p=0
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}
if [ "$quick" -eq 0 ]; then
  for job in scripts/test-sanitize.sh scripts/test-aarch64.sh; do
    [ -f "$job" ] && run_job "$job"
  done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

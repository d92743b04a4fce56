#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (one at a time; JOBS=2 runs two at once) and prints, per
# target, the executions and the findings. Usage: tests/fuzz/run.sh SECONDS [target...]
# Seeds: tests/fuzz/corpus/<target>/ and tests/fuzz/regressions/<target>/ (read only); new coverage goes to
# build-fuzz/corpus/<target>/, crashing inputs to build-fuzz/artifacts/<target>/ (a finding: make it a
# regression test and copy the input to tests/fuzz/regressions/<target>/, see README.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:?usage: tests/fuzz/run.sh SECONDS [target...]}
shift
ALL="safetensors spec aimet_config encodings quantsim_json checkpoint_state bundle idx cifar text npy"
TARGETS=${*:-$ALL}
B=${FUZZ_BUILD_DIR:-build-fuzz}
[ -n "${FUZZ_NO_BUILD:-}" ] || tests/fuzz/build.sh $TARGETS >&2 || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

run_one() {
  local t=$1
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
  local seeds=(tests/fuzz/corpus/$t)
  [ -d tests/fuzz/regressions/$t ] && seeds+=(tests/fuzz/regressions/$t)
  "$B/tests/fuzz/fuzz_$t" "$B/corpus/$t" "${seeds[@]}" -max_total_time="$SECS" -timeout=30 -rss_limit_mb=4096 \
    -malloc_limit_mb=3072 -max_len=16384 -dict=tests/fuzz/json.dict -artifact_prefix="$B/artifacts/$t/" \
    -print_final_stats=1 >"$B/logs/$t.log" 2>&1
  local rc=$?
  local execs findings
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$B/logs/$t.log" | tail -1 | grep -o '[0-9]*$')
  findings=$(find "$B/artifacts/$t" -type f | wc -l)
  printf '%-17s %8ss  executions %-10s findings %s (exit %s; log %s)\n' "$t" "$SECS" "${execs:-?}" "$findings" "$rc" \
    "$B/logs/$t.log"
}

if [ "${JOBS:-1}" -gt 1 ]; then
  for t in $TARGETS; do
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  done
  wait
else
  for t in $TARGETS; do run_one "$t"; done
fi

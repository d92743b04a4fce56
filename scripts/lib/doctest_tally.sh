# doctest_tally LABEL LOG RC [EXTRA_FAILURES]: adds the test-case counts of one doctest run (its output in
# LOG, its exit code RC) to the caller's $passed and $failed. A run that crashed or printed no summary
# counts one failure; so does a non-zero exit with no failed case. EXTRA_FAILURES (e.g. sanitizer reports
# the caller found in LOG) are added to the failures. Sourced by scripts/test*.sh.
doctest_tally() {
  local label=$1 log=$2 rc=$3 extra=${4:-0} line p f
  line=$(grep '^\[doctest\] test cases:' "$log" | tail -n1)
  p=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) failed.*/\1/p')
  f=$((${f:-0} + extra))
  if [ -z "$p" ]; then
    tail -n 30 "$log"
    echo "$label crashed or printed no summary (exit $rc)"
    p=0
    f=$((f + 1))
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    tail -n 30 "$log"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

#!/usr/bin/env bash
# Builds qforge and runs every test: each doctest executable, then the install test (a user program
# built against the installed library with pkg-config). Ends with the line "N passed, M failed"
# counting test cases.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

export QFORGE_SOURCE_ROOT="$PWD"
passed=0
failed=0
logdir=build/test-logs
mkdir -p "$logdir"

for exe in $(find build/tests -maxdepth 3 -type f -name 'tests_*' -perm -u+x | sort); do
  name=$(basename "$exe")
  echo "== $name"
  "$exe" --no-intro=true 2>&1 | tee "$logdir/$name.log" | grep -v '^\[doctest\] \(doctest version\|run with\)' | tail -n 40
  rc=${PIPESTATUS[0]}
  line=$(grep '^\[doctest\] test cases:' "$logdir/$name.log" | tail -n1)
  p=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.*| *\([0-9]*\) failed.*/\1/p')
  if [ -z "$p" ]; then
    echo "$name crashed or printed no summary (exit $rc)"
    p=0
    f=$((${f:-0} + 1))
  elif [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + ${f:-0}))
done

for t in tests/scripts/test_*.sh; do
  [ -f "$t" ] || continue
  echo "== $(basename "$t")"
  if bash "$t" >"$logdir/$(basename "$t").log" 2>&1; then
    echo "ok"
    passed=$((passed + 1))
  else
    tail -n 30 "$logdir/$(basename "$t").log"
    echo "FAILED: $t"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

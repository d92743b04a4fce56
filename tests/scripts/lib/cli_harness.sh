# Shared by the CLI script tests (sourced, after `cd` to the repository root): the binary under test ($Q,
# QFORGE_BIN overrides build/apps/qforge), a private work directory removed at exit, a failure counter and
# expect_rc, which runs a command with its output in $work/out.txt and $work/err.txt and checks its exit code.
Q="${QFORGE_BIN:-$PWD/build/apps/qforge}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_rc() {  # expect_rc CODE DESCRIPTION -- command...
  local want=$1 what=$2
  shift 3
  "$@" >"$work/out.txt" 2>"$work/err.txt"
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$what: exit $rc, expected $want"
    tail -n 5 "$work/err.txt"
  fi
}

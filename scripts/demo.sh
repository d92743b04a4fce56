#!/usr/bin/env bash
# Builds qforge and runs its main job: `qforge demo` (train -> quantize -> fine-tune -> int8 evaluation).
# Arguments are passed to `qforge demo` (e.g. --data mnist:../shared/data/mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the qforge executable and what it links: the test suite is built by scripts/test.sh.
bash scripts/build.sh apps/qforge
exec ./build/apps/qforge demo "$@"

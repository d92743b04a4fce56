#!/usr/bin/env bash
# Builds qforge and runs its main job: `qforge demo` (train -> quantize -> fine-tune -> int8 evaluation).
# Arguments are passed to `qforge demo` (e.g. --data mnist:../shared/data/mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec ./build/apps/qforge demo "$@"

#!/usr/bin/env bash
# Configures (once) and builds qforge in ./build (release, -O3). Usage: scripts/build.sh [ninja targets]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f build/build.ninja ]; then
  # ccache, when installed and no compiler is chosen, makes rebuilds of a fresh clone cheap (same results).
  if [ -z "${CXX:-}" ] && command -v ccache >/dev/null; then export CXX="ccache g++"; fi
  meson setup build --buildtype=release >/dev/null
fi
ninja -C build "$@" >&2

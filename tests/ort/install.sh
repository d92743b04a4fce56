#!/usr/bin/env bash
# Installs ONNX Runtime's CPU build (npm package onnxruntime-node, pinned in package.json) into
# tests/ort/node_modules for the parity tests and benchmarks. --ignore-scripts: the package's install script
# only downloads GPU/CUDA files, which this project does not use (and cannot reach). Idempotent; prints the
# directory on success, exits 1 when Node.js/npm or the registry is unavailable.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/ort/install.sh: node and npm are needed for the ONNX Runtime parity tests" >&2
  exit 1
fi
if [ ! -f "$here/node_modules/onnxruntime-node/package.json" ]; then
  (cd "$here" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
fi
node "$here/run_ort.js" info >/dev/null
echo "$here/node_modules"

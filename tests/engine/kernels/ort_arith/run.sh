#!/usr/bin/env bash
# Checks engine/kernels/arith_profile.hpp against the real ONNX Runtime (onnxruntime-node, CPU build):
# QLinearAdd (all uint8 pairs, 40 random scale/zero-point sets), QuantizeLinear (ties included),
# QLinearGlobalAveragePool and QLinearConv (per-channel, power-of-two scales for exact ties, 7-bit weights).
# Each model is a single hand-encoded ONNX node (no Python needed); the C++ side evaluates qforge's
# profile functions on the same inputs and prints how many outputs differ (expected: 0 for onnxruntime).
# Usage: tests/engine/kernels/ort_arith/run.sh [DIR_WITH_node_modules]  (default: tests/ort)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
export ORT_NODE="${1:-$root/tests/ort}/node_modules/onnxruntime-node"
[ -d "$ORT_NODE" ] || { echo "onnxruntime-node not found at $ORT_NODE (npm install --ignore-scripts onnxruntime-node@1.30.0)"; exit 77; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
for t in qladd qlin qconv; do
  g++ -std=c++20 -O1 -ffp-contract=off -I"$root" "$here/${t}_check.cpp" -o "$t"
  "./$t" gen
  node "$here/$t.js" >/dev/null
  "./$t" cmp
done

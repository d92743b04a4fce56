#!/usr/bin/env bash
# qforge's int8 runtime against ONNX Runtime (CPU build from npm, tests/ort) on the same model: each zoo model is
# trained briefly, quantized (--target onnxruntime when this qforge has it), exported as QDQ ONNX, and run by
# both at batch 1 and 64 with 1 and 2 threads. qforge's time is `qforge bench infer`'s int8 median (the same
# architecture, its own calibrated weights: the speed of an int8 program does not depend on the values); ORT's
# is run_ort.js bench's median over the exported file. Prints one row per configuration and the ratio
# ort_ms / qforge_ms (> 1: qforge is faster). State the CPU (lscpu) beside the figures.
#   benchmarks/ort_vs_qforge.sh [MODELS...]   (default: mnist-cnn dw-cnn resnet-tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
Q="${QFORGE_BIN:-$PWD/build/apps/qforge}"
export QFORGE_ORT_NODE_MODULES="$(bash tests/ort/install.sh)"
data_dir="${QFORGE_DATA:-../shared/data}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mnist-cnn dw-cnn resnet-tiny)
target=()
"$Q" quantize --help | grep -q -- '--target' && target=(--target onnxruntime)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(node tests/ort/run_ort.js info)"
printf '%-12s %6s %8s %12s %12s %10s\n' model batch threads qforge_ms ort_ms ort/qforge
for model in "${models[@]}"; do
  "$Q" train --model "$model" --data synthetic:2000 --epochs 1 --out "$work/$model" >/dev/null 2>&1
  "$Q" quantize --model-dir "$work/$model" --data synthetic:2000 "${target[@]}" --out "$work/$model.q" >/dev/null 2>&1
  "$Q" export --model-dir "$work/$model.q" --format onnx --out "$work/$model.onnx" >/dev/null
  for threads in 1 2; do
    qf=$("$Q" bench infer --model "$model" --batches 1,64 --threads "$threads" --json | tail -n 1)
    for batch in 1 64; do
      node tests/ort/mnist_inputs.js "$data_dir/mnist/t10k-images-idx3-ubyte.gz" "$batch" 0 "$work/in$batch.safetensors"
      ort=$(node tests/ort/run_ort.js bench "$work/$model.onnx" "$work/in$batch.safetensors" --threads "$threads" --iters 200 |
            sed 's/.*"ms_per_run":\([0-9.e+-]*\).*/\1/')
      q=$(echo "$qf" | grep -o "{\"batch\":$batch,[^}]*}" | sed 's/.*"int8_ms":\([0-9.e+-]*\).*/\1/')
      awk -v m="$model" -v b="$batch" -v t="$threads" -v q="$q" -v o="$ort" \
        'BEGIN { printf "%-12s %6d %8d %12.4f %12.4f %10.2f\n", m, b, t, q, o, o / q }'
    done
  done
done

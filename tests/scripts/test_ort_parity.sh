#!/usr/bin/env bash
# ONNX Runtime parity (issue 14 §4): qforge's integer runtime and the real ONNX Runtime (CPU build from the
# npm package onnxruntime-node, tests/ort/install.sh) compute the same output integers for the QDQ models
# `qforge export --format onnx` writes.
#   - zoo models mnist-cnn, dw-cnn, resnet-tiny: PTQ and QAT (finetune), and 7-bit weights;
#   - imported torchvision fixtures resnet18 and mobilenet_v2 (tests/fixtures/onnx), PTQ on their
#     calibration sets;
#   - the float export (--format onnx-fp32) of each zoo model: ORT within 1e-5 of qforge run --mode fp32, and
#     importing it back gives the same model.
# Inputs are real MNIST test images (or the fixtures' inputs); qforge run --mode int8 and ORT get the same
# float file. Exactness is asserted where ORT itself is exact: 7-bit weights everywhere; 8-bit weights on
# machines with VNNI (ORT's AVX2 u8s8 kernels may saturate in vpmaddubsw otherwise) or when the export
# reports no layer at risk (Note [vpmaddubsw risk] in quant/export/export_qdq.cpp). With the arithmetic
# profile `dsp` the differences are reported, not asserted; with `onnxruntime` they must be 0.
# Run from the repository root after building (QFORGE_BIN overrides build/apps/qforge).
set -u
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
passed=0

ort_dir=$(bash tests/ort/install.sh) || { echo "FAIL: ONNX Runtime (onnxruntime-node) could not be installed"; exit 1; }
export QFORGE_ORT_NODE_MODULES="$ort_dir"
data_dir="${QFORGE_DATA:-}"
[ -n "$data_dir" ] || for d in ../shared/data ../../shared/data; do [ -d "$d/mnist" ] && data_dir="$d" && break; done
images="$data_dir/mnist/t10k-images-idx3-ubyte.gz"
[ -f "$images" ] || { echo "FAIL: MNIST test images not found (QFORGE_DATA)"; exit 1; }

vnni=no
grep -qwE 'avx512_vnni|avx_vnni' /proc/cpuinfo && vnni=yes
model_name=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "REPORT: machine: $model_name; VNNI: $vnni; $(node tests/ort/run_ort.js info)"
targets=dsp
"$Q" quantize --help 2>/dev/null | grep -q -- '--target' && targets="dsp onnxruntime"

# Operator level: the onnxruntime profile's arithmetic against single ORT nodes (QLinearAdd over all uint8
# pairs, QuantizeLinear, QLinearGlobalAveragePool, QLinearConv): 0 differing outputs.
if bash tests/engine/kernels/ort_arith/run.sh "$(dirname "$ort_dir")" >"$work/arith.txt" 2>&1; then
  sed 's/^/REPORT: /' "$work/arith.txt"
  n=$(grep -oE 'onnxruntime profile differs in 0 |values, 0 differ|outputs, 0 differ' "$work/arith.txt" | wc -l)
  [ "$n" -eq 4 ] && passed=$((passed + 1)) || fail "operator-level arithmetic differs from ORT: $(cat "$work/arith.txt")"
else
  fail "tests/engine/kernels/ort_arith/run.sh failed"; tail -n 5 "$work/arith.txt"
fi

node tests/ort/mnist_inputs.js "$images" 500 0 "$work/mnist500.safetensors"

# parity NAME QDIR INPUTS MUST_BE_EXACT(yes|no|auto)
parity() {
  local name=$1 qdir=$2 inputs=$3 exact=$4
  local onnx="$work/$name.onnx"
  if ! "$Q" export --model-dir "$qdir" --format onnx --out "$onnx" --json >"$work/export.txt" 2>&1; then
    fail "$name: export --format onnx"; tail -n 3 "$work/export.txt"; return
  fi
  local risk out
  risk=$(tail -n 1 "$work/export.txt" | grep -o '"vpmaddubsw_risk_layers":\[[^]]*\]' | sed 's/.*\[//' | grep -o '"[^"]*"' | wc -l)
  out=$(tail -n 1 "$work/export.txt" | grep -o '"outputs":\["[^"]*"' | sed 's/.*\["//; s/"$//')
  "$Q" run --model-dir "$qdir" --inputs "$inputs" --out "$work/$name.qf.safetensors" --mode int8 >/dev/null 2>"$work/err.txt" \
    || { fail "$name: qforge run --mode int8"; tail -n 3 "$work/err.txt"; return; }
  node tests/ort/run_ort.js run "$onnx" "$inputs" "$work/$name.ort.safetensors" 2>"$work/err.txt" \
    || { fail "$name: ONNX Runtime could not run the export"; tail -n 3 "$work/err.txt"; return; }
  local report
  report=$(node tests/ort/compare_codes.js "$work/$name.qf.safetensors" "$out.int8" "$work/$name.ort.safetensors" "${out}_q" --label "$name")
  echo "REPORT: $report (layers at vpmaddubsw risk: $risk; asserted exact: $exact)"
  if [ "$exact" = auto ]; then
    exact=no
    { [ "$vnni" = yes ] || [ "$risk" = 0 ]; } && exact=yes
  fi
  if [ "$exact" = yes ] && ! echo "$report" | grep -q '"differing":0,'; then
    fail "$name: output integers differ from ONNX Runtime's"
  else
    passed=$((passed + 1))
  fi
}

ct="${COMPARE_TENSORS:-$(dirname "$Q")/../tests/compare_tensors}"

# fp32 NAME DIR INPUTS: export --format onnx-fp32 runs in ORT like qforge run --mode fp32 (float tolerance), and
# imports back into qforge as the same model.
fp32() {
  local name=$1 dir=$2 inputs=$3
  if ! "$Q" export --model-dir "$dir" --format onnx-fp32 --out "$work/$name.fp32.onnx" >"$work/err.txt" 2>&1; then
    fail "$name: export --format onnx-fp32"; tail -n 3 "$work/err.txt"; return
  fi
  "$Q" run --model-dir "$dir" --inputs "$inputs" --out "$work/$name.fp32.qf.safetensors" --mode fp32 >/dev/null 2>&1 \
    || { fail "$name: qforge run --mode fp32"; return; }
  node tests/ort/run_ort.js run "$work/$name.fp32.onnx" "$inputs" "$work/$name.fp32.ort.safetensors" 2>"$work/err.txt" \
    || { fail "$name: ORT could not run the fp32 export"; tail -n 3 "$work/err.txt"; return; }
  if "$ct" "$work/$name.fp32.qf.safetensors" "$work/$name.fp32.ort.safetensors" --tol 1e-5 fc >"$work/cmp.txt" 2>&1; then
    passed=$((passed + 1)); echo "REPORT: $name fp32 export vs ORT: $(head -n 1 "$work/cmp.txt")"
  else
    fail "$name: fp32 export differs from qforge in ORT"; cat "$work/cmp.txt"
  fi
  expect_rc 0 "$name: import the fp32 export" -- "$Q" import "$work/$name.fp32.onnx" --out "$work/$name.reimported"
  "$Q" run --model-dir "$work/$name.reimported" --inputs "$inputs" --out "$work/$name.re.safetensors" --mode fp32 >/dev/null 2>&1 \
    && "$ct" "$work/$name.fp32.qf.safetensors" "$work/$name.re.safetensors" --tol 1e-6 fc >/dev/null 2>&1 \
    && passed=$((passed + 1)) || fail "$name: the re-imported fp32 export does not compute the same outputs"
}

for model in mnist-cnn dw-cnn resnet-tiny; do
  m="$work/$model"
  expect_rc 0 "train $model" -- "$Q" train --model "$model" --data synthetic:3000 --epochs 1 --threads 2 --out "$m"
  fp32 "$model" "$m" "$work/mnist500.safetensors"
  for target in $targets; do
    topt=(); [ "$target" = dsp ] || topt=(--target "$target")
    want=no; [ "$target" = onnxruntime ] && want=auto
    expect_rc 0 "quantize $model ($target)" -- "$Q" quantize --model-dir "$m" --data synthetic:3000 --out "$m.$target" "${topt[@]}" --threads 2
    parity "$model.ptq.$target" "$m.$target" "$work/mnist500.safetensors" "$want"
    expect_rc 0 "finetune $model ($target)" -- "$Q" finetune --model-dir "$m.$target" --data synthetic:3000 --epochs 1 --threads 2 --out "$m.$target.qat"
    parity "$model.qat.$target" "$m.$target.qat" "$work/mnist500.safetensors" "$want"
    # 7-bit weights: no pair of products can saturate, so ORT is exact on every x86 machine.
    want7=no; [ "$target" = onnxruntime ] && want7=yes
    expect_rc 0 "quantize $model 7-bit ($target)" -- "$Q" quantize --model-dir "$m" --data synthetic:3000 --param-bw 7 --out "$m.$target.w7" "${topt[@]}" --threads 2
    parity "$model.w7.$target" "$m.$target.w7" "$work/mnist500.safetensors" "$want7"
  done
done

fx=tests/fixtures/onnx
for case in resnet18 mobilenet_v2; do
  d="$work/$case"
  expect_rc 0 "import $case" -- "$Q" import "$fx/$case.onnx" --out "$d"
  for target in $targets; do
    topt=(); [ "$target" = dsp ] || topt=(--target "$target")
    want=no; [ "$target" = onnxruntime ] && want=auto
    expect_rc 0 "quantize $case ($target)" -- "$Q" quantize --model-dir "$d" --data "tensors:$fx/$case.calib.npz" --out "$d.$target" "${topt[@]}" --threads 2
    parity "$case.ptq.$target" "$d.$target" "$fx/$case.inputs.npz" "$want"
    parity "$case.ptq.$target.calib" "$d.$target" "$fx/$case.calib.npz" "$want"
  done
done

# Recurrent models (Note [recurrent QDQ] in quant/export/export_qdq.cpp): ORT runs LSTM/GRU in float32, qforge
# its integer 8x8_16 cell, so the output integers agree to within rounding. Targets (issue 14 §4): top-1
# agreement >= 99.9% and at most 1 LSB of the output encoding, asserted for the MNIST-row lstm (2000 test
# images: the last 2000 of t10k, the test split) and reported for gru and the char-lstm on Tiny Shakespeare.
# char-lstm starts from token ids through an Embedding, which the int8 program has no kernel for: its quantized
# LSTM+Linear head runs on the embedded validation windows (tests/ort/char_lstm_head.js).
# recurrent NAME QDIR INPUTS ASSERT(yes|lsb|no)
recurrent() {
  local name=$1 qdir=$2 inputs=$3 assert=$4 onnx="$work/$1.onnx"
  shift 4
  "$Q" export --model-dir "$qdir" --format onnx --out "$onnx" "$@" >"$work/err.txt" 2>&1 \
    || { fail "$name: export --format onnx"; tail -n 3 "$work/err.txt"; return; }
  "$Q" run --model-dir "$qdir" --inputs "$inputs" --out "$work/$name.qf.safetensors" --mode int8 >/dev/null 2>"$work/err.txt" \
    || { fail "$name: qforge run --mode int8"; tail -n 3 "$work/err.txt"; return; }
  node tests/ort/run_ort.js run "$onnx" "$inputs" "$work/$name.ort.safetensors" 2>"$work/err.txt" \
    || { fail "$name: ONNX Runtime could not run the export"; tail -n 3 "$work/err.txt"; return; }
  local report lsb top1
  report=$(node tests/ort/compare_codes.js "$work/$name.qf.safetensors" fc.int8 "$work/$name.ort.safetensors" fc_q --label "$name")
  lsb=$(echo "$report" | grep -o '"max_lsb":[0-9]*' | cut -d: -f2)
  top1=$(echo "$report" | grep -o '"top1_agreement":[0-9.e-]*' | cut -d: -f2)
  echo "REPORT: $report (recurrent, ORT in float32; asserted: $assert)"
  local ok=yes
  [ "${lsb:-99}" -le 1 ] || { [ "$assert" = no ] || ok=no; }
  awk -v t="${top1:-0}" 'BEGIN { exit !(t >= 0.999) }' || { [ "$assert" = yes ] && ok=no; }
  [ "$ok" = yes ] && passed=$((passed + 1)) || fail "$name: recurrent parity with ORT below target: $report"
}
node tests/ort/mnist_inputs.js "$images" 2000 8000 "$work/mnist2000.safetensors"
for model in lstm gru; do
  m="$work/$model"
  expect_rc 0 "train $model" -- "$Q" train --model "$model" --data "mnist:$data_dir/mnist" --epochs 1 --optimizer adam --threads 2 --progress none --out "$m"
  expect_rc 0 "quantize $model" -- "$Q" quantize --model-dir "$m" --out "$m.q" --threads 2
  want=yes; [ "$model" = gru ] && want=no
  recurrent "$model" "$m.q" "$work/mnist2000.safetensors" "$want"
done
text="$data_dir/tinyshakespeare/input.txt"
if [ -f "$text" ]; then
  head -c 200000 "$text" >"$work/shakespeare200k.txt"  # a prefix keeps training short; split as qforge splits text
  m="$work/char-lstm"
  expect_rc 0 "train char-lstm" -- "$Q" train --model char-lstm --data "text:$work/shakespeare200k.txt" --seq-len 32 --epochs 1 --optimizer adam --threads 2 --progress none --out "$m"
  expect_rc 0 "quantize char-lstm" -- "$Q" quantize --model-dir "$m" --out "$m.q" --threads 2
  node tests/ort/char_lstm_head.js "$m.q" "$work/shakespeare200k.txt" 32 512 "$m.head" \
    && recurrent char-lstm "$m.head" "$m.head.inputs.safetensors" lsb --data "tensors:$m.head.inputs.safetensors" \
    || fail "char-lstm: could not derive its LSTM head"
else
  echo "REPORT: char-lstm skipped: $text not found (QFORGE_DATA)"
fi

echo "test_ort_parity: $passed comparisons passed, $fails failure(s)"
[ "$fails" -eq 0 ]

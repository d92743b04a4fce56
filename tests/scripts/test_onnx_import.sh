#!/usr/bin/env bash
# `qforge import` end to end on the ONNX fixtures (tools/gen_fixtures_onnx.py -> tests/fixtures/onnx/):
#  - every case is imported and run with `qforge run --mode fp32`; its outputs match PyTorch's within the
#    case's tolerance (max |qforge - PyTorch| / max |PyTorch|, 1e-4), compared by tests/compare_tensors;
#  - an imported zoo twin gives the outputs of the zoo model itself with the same weights;
#  - imported resnet18 and mobilenet_v2, quantized W8A8 on their calibration sets (--data tensors:FILE),
#    give identical output integers in exact simulation and on the int8 runtime; analyze and compare run;
#  - the imported mnist-cnn twin (BatchNorm kept) trains on MNIST to the zoo model's accuracy (+-0.3 points;
#    skipped without the data; ~1.5 min);
#  - hostile files (truncated/corrupt protobuf, unknown ops, unsupported attributes, missing external data,
#    unresolvable shapes, bad .npz) exit 2 with a message naming the problem, and write nothing;
#  - the import time of the full-size torchvision resnet18 is printed (not asserted): the model is made by
#    the generator (needs Debian's python3-torch) or taken from QFORGE_FULL_RESNET18=FILE.onnx.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
F=tests/fixtures/onnx
CMP="${QFORGE_COMPARE_BIN:-$(dirname "$(dirname "$Q")")/tests/compare_tensors}"
if [ ! -x "$CMP" ]; then
  echo "FAIL: $CMP is not built (ninja tests/compare_tensors)"
  exit 1
fi

# compare_outputs WHAT compare_tensors-args...: a failed comparison prints compare_tensors' lines.
compare_outputs() {
  local what=$1
  shift
  if ! "$CMP" "$@" >"$work/cmp.txt" 2>&1; then
    fail "$what"
    cat "$work/cmp.txt"
    return 1
  fi
}
# nothing_written WHAT PATH...
nothing_written() {
  local what=$1 p
  shift
  for p in "$@"; do [ -e "$p" ] && fail "$what: $p was written"; done
  # no temporary siblings left either
  for p in "$@"; do compgen -G "$p.*" >/dev/null && fail "$what: temporary files left next to $p"; done
  return 0
}
# output_pairs DIR ONNX_NAMES: "onnx_name=run_name ..." for compare_tensors; `qforge run` names an imported
# model's outputs after its spec's outputs, the k-th of which is the k-th ONNX graph output.
output_pairs() {
  local -a refs names
  local k
  mapfile -t refs < <("$CMP" --spec-outputs "$1")
  IFS=, read -ra names <<<"$2"
  for k in "${!names[@]}"; do printf '%s=%s\n' "${names[$k]}" "${refs[$k]:-?}"; done
}
expect_message() {  # expect_message WHAT SUBSTRING: in $work/err.txt
  grep -qF -- "$2" "$work/err.txt" || { fail "$1: message does not mention '$2'"; head -n 3 "$work/err.txt"; }
}

# the comparison itself can fail: different outputs (1), a missing array (2), a shape mismatch (1)
"$CMP" "$F/resnet18.expected.npz" "$F/mobilenet_v2.expected.npz" >/dev/null 2>&1
[ $? -eq 1 ] || fail "compare_tensors does not report different outputs"
"$CMP" "$F/resnet18.expected.npz" "$F/gru_text.expected.npz" >/dev/null 2>&1
[ $? -eq 2 ] || fail "compare_tensors does not report a missing array"
"$CMP" "$F/resnet18.expected.npz" "$F/zoo_mlp.expected.npz" >/dev/null 2>&1
[ $? -eq 1 ] || fail "compare_tensors does not report a shape mismatch"

# ---- every case: import, run fp32, compare with PyTorch ----------------------------------------------
ran=0
declare -A imported refs0
while IFS=$'\t' read -r case file inputs expected tol calib quantize zoo outputs; do
  [[ $case == \#* ]] && continue
  d="$work/m_$case"
  expect_rc 0 "import $case" -- "$Q" import "$F/$file" --out "$d" --json
  for f in model.json weights.safetensors report.json; do
    [ -s "$d/$f" ] || fail "import $case did not write $f"
  done
  [ -s "$d/model.json" ] || continue
  imported[$case]=$d
  mapfile -t pairs < <(output_pairs "$d" "$outputs")
  refs0[$case]=${pairs[0]#*=}
  out="$work/$case.fp32.safetensors"
  expect_rc 0 "run $case fp32" -- "$Q" run --model-dir "$d" --inputs "$F/$inputs" --out "$out" --mode fp32 --json
  if [ -s "$out" ]; then
    compare_outputs "$case: qforge fp32 outputs differ from PyTorch's" "$F/$expected" "$out" --tol "$tol" "${pairs[@]}" &&
      sed "s/^/  $case: /" "$work/cmp.txt"
    ran=$((ran + 1))
  else
    fail "run $case wrote no outputs"
  fi
done <"$F/cases.tsv"
echo "onnx import: $ran cases imported and compared with PyTorch"

# ---- zoo twins against the zoo models (same weights: tests/fixtures/nn/zoo_*.weights.safetensors) -------
# A zoo model directory is made by a 1-step training run whose weights are then replaced by the fixture's
# (char-lstm: on a text of 11 distinct characters, the fixture's vocabulary size).
printf 'abcdefghij\n%.0s' {1..100} >"$work/vocab11.txt"
for zoo in mlp mnist-cnn dw-cnn resnet-tiny lstm gru char-lstm; do
  case=zoo_${zoo//-/_}
  [ -n "${imported[$case]:-}" ] || continue
  z="$work/zoo_$case"
  data=synthetic:64
  [ "$zoo" = char-lstm ] && data="text:$work/vocab11.txt"
  expect_rc 0 "train zoo $zoo (1 step)" -- "$Q" train --model "$zoo" --data "$data" --batch-size 4 --epochs 1 \
    --max-steps 1 --seed 0 --threads 1 --progress none --out "$z"
  cp "tests/fixtures/nn/$case.weights.safetensors" "$z/weights.safetensors" || continue
  expect_rc 0 "run zoo $zoo fp32" -- "$Q" run --model-dir "$z" --inputs "$F/$case.inputs.npz" --out "$work/$case.zoo.safetensors" --mode fp32
  [ -s "$work/$case.zoo.safetensors" ] || continue
  # the zoo model's output is named after its last node; compare every array of the two files by position
  zname=$("$CMP" --list "$work/$case.zoo.safetensors" 2>/dev/null | head -n 1 | cut -f1)
  compare_outputs "$case: imported twin differs from the zoo model $zoo" "$work/$case.zoo.safetensors" \
    "$work/$case.fp32.safetensors" --tol 1e-4 "$zname=${refs0[$case]}" && sed "s/^/  $case vs zoo $zoo: /" "$work/cmp.txt"
done

# ---- quantized: exact simulation == int8 runtime, analyze, compare ---------------------------------------
while IFS=$'\t' read -r case file inputs expected tol calib quantize zoo outputs; do
  [[ $case == \#* || $quantize != yes ]] && continue
  d=${imported[$case]:-}
  [ -n "$d" ] || continue
  q="$work/q_$case"
  expect_rc 0 "quantize $case W8A8 on $calib" -- "$Q" quantize --model-dir "$d" --out "$q" --data "tensors:$F/$calib" \
    --param-bw 8 --output-bw 8 --calib-batches 2 --batch-size 8 --threads 1 --json
  [ -s "$q/encodings.json" ] || { fail "quantize $case wrote no encodings"; continue; }
  for m in exact int8; do
    expect_rc 0 "run $case $m" -- "$Q" run --model-dir "$q" --inputs "$F/$inputs" --out "$work/$case.$m.safetensors" --mode $m --json
  done
  if [ -s "$work/$case.exact.safetensors" ] && [ -s "$work/$case.int8.safetensors" ]; then
    # every array (float outputs and output integers) identical between simulation and device
    compare_outputs "$case: exact simulation and int8 runtime differ" "$work/$case.exact.safetensors" \
      "$work/$case.int8.safetensors" --exact && sed "s/^/  $case exact vs int8: /" "$work/cmp.txt"
    grep -q '\.int8' <("$CMP" --list "$work/$case.int8.safetensors") || fail "$case: run --mode int8 saved no output integers"
  fi
  # the quantized model still tracks the float one (a loose sanity bound, not an accuracy claim)
  compare_outputs "$case: W8A8 exact outputs far from PyTorch's fp32" "$F/$expected" "$work/$case.exact.safetensors" \
    --tol 0.5 "$(cut -d, -f1 <<<"$outputs")=${refs0[$case]}" && sed "s/^/  $case W8A8 exact vs PyTorch fp32: /" "$work/cmp.txt"
  expect_rc 0 "analyze $case" -- "$Q" analyze --model-dir "$q" --data "tensors:$F/$calib" --out "$work/an_$case" \
    --no-sweeps --batches 1 --json
  [ -s "$work/an_$case/analysis.json" ] || fail "analyze $case wrote no analysis.json"
  expect_rc 0 "compare $case" -- "$Q" compare --model-dir "$q" --data "tensors:$F/$calib" --samples 8 --json
done <"$F/cases.tsv"

# ---- an imported twin trains like the zoo model (MNIST, same recipe): mnist-cnn with BatchNorm kept --------
# Built from model.json alone (fresh initialisation), the imported spec has the zoo model's layers in the same
# order, so the same seed gives the same run; the issue's bound is +-0.3 accuracy points.
mnist=${QFORGE_DATA:-$PWD/../shared/data}/mnist
if [ -n "${imported[zoo_mnist_cnn_bn]:-}" ] && [ -e "$mnist/t10k-images-idx3-ubyte.gz" ]; then
  recipe=(--data "mnist:$mnist" --epochs 1 --lr 0.02 --seed 0 --threads 2 --progress none --json)
  expect_rc 0 "train zoo mnist-cnn on MNIST" -- "$Q" train --model mnist-cnn "${recipe[@]}" --out "$work/tr_zoo"
  acc_zoo=$(tail -n 1 "$work/out.txt" | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p')
  expect_rc 0 "train imported twin on MNIST" -- "$Q" train --model "${imported[zoo_mnist_cnn_bn]}/model.json" "${recipe[@]}" \
    --out "$work/tr_twin"
  acc_twin=$(tail -n 1 "$work/out.txt" | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p')
  echo "  MNIST, 1 epoch: zoo mnist-cnn ${acc_zoo:-?} %, imported twin ${acc_twin:-?} %"
  if [ -z "$acc_zoo" ] || [ -z "$acc_twin" ] || ! awk -v a="$acc_zoo" -v b="$acc_twin" 'BEGIN { d = a - b; exit !(d <= 0.3 && d >= -0.3) }'; then
    fail "imported mnist-cnn twin trains to ${acc_twin:-?} %, the zoo model to ${acc_zoo:-?} % (bound +-0.3)"
  fi
else
  echo "SKIPPED: training the imported twin needs MNIST in \$QFORGE_DATA/mnist or ../shared/data/mnist"
fi

# ---- hostile files: exit 2, a message naming the problem, nothing written ------------------------------
while IFS=$'\t' read -r case file stage message model; do
  [[ $case == \#* ]] && continue
  if [ "$stage" = import ]; then
    expect_rc 2 "import $case" -- "$Q" import "$F/$file" --out "$work/h_$case"
    expect_message "import $case" "$message"
    nothing_written "import $case" "$work/h_$case"
  else
    d=${imported[$model]:-}
    [ -n "$d" ] || { fail "$case: model $model was not imported"; continue; }
    if [ "$stage" = run+data ]; then
      expect_rc 2 "run --inputs $case" -- "$Q" run --model-dir "$d" --inputs "$F/$file" --out "$work/h_$case.safetensors"
      expect_message "run --inputs $case" "$message"
      expect_message "run --inputs $case" "$file"
      nothing_written "run --inputs $case" "$work/h_$case.safetensors"
    fi
    expect_rc 2 "quantize --data $case" -- "$Q" quantize --model-dir "$d" --data "tensors:$F/$file" --out "$work/hq_$case"
    expect_message "quantize --data $case" "$message"
    nothing_written "quantize --data $case" "$work/hq_$case"
  fi
done <"$F/hostile.tsv"
# the unresolvable shape resolved: the same file with --input-shape imports and gives the LSTM twin's outputs
expect_rc 0 "import bad_dynamic_shape --input-shape" -- "$Q" import "$F/bad_dynamic_shape.onnx" --out "$work/dyn" \
  --input-shape input=4,1,28,28
if [ -s "$work/dyn/model.json" ]; then
  expect_rc 0 "run dynamic-shape lstm" -- "$Q" run --model-dir "$work/dyn" --inputs "$F/zoo_lstm.inputs.npz" \
    --out "$work/dyn.safetensors" --mode fp32
  [ -s "$work/dyn.safetensors" ] && compare_outputs "dynamic-shape lstm with --input-shape differs from PyTorch's" \
    "$F/zoo_lstm.expected.npz" "$work/dyn.safetensors" "$(output_pairs "$work/dyn" output)"
fi
# a model directory that exists already is left alone by a failing import
mkdir -p "$work/keep" && echo keep >"$work/keep/mine.txt"
expect_rc 2 "import truncated over an existing dir" -- "$Q" import "$F/bad_truncated.onnx" --out "$work/keep"
[ "$(ls "$work/keep")" = mine.txt ] || fail "a failing import changed an existing directory"

# ---- import time of the full-size resnet18 (reported, not asserted) -------------------------------------
full=${QFORGE_FULL_RESNET18:-}
if [ -z "$full" ] && /usr/bin/python3 -c "import torch, torchvision, onnx" 2>/dev/null; then
  full="$work/resnet18_full.onnx"
  /usr/bin/python3 tools/gen_fixtures_onnx.py --full-resnet18 "$full" >/dev/null 2>&1 || full=""
fi
if [ -n "$full" ] && [ -s "$full" ]; then
  t0=$(date +%s.%N)
  expect_rc 0 "import full resnet18" -- "$Q" import "$full" --out "$work/resnet18_full"
  t1=$(date +%s.%N)
  echo "onnx import: full-size resnet18 ($(du -h "$full" | cut -f1)) imported in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
else
  echo "onnx import: full-size resnet18 timing skipped (no python3-torch; set QFORGE_FULL_RESNET18=FILE.onnx)"
fi

if [ "$fails" -ne 0 ]; then
  echo "test_onnx_import.sh: $fails failure(s)"
  exit 1
fi
echo "test_onnx_import.sh: all passed"

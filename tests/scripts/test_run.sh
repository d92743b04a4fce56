#!/usr/bin/env bash
# qforge run and --data tensors:FILE end to end: a small zoo CNN trained on synthetic digits and quantized,
# run on numpy inputs (tests/fixtures/npy/digits.npz, written by tools/gen_fixtures_npy.py) in every mode
# (exact and int8 integers identical, the float outputs within tolerance of each other, run fp32 = eval's
# logits); a Linear-only spec on 20-feature vectors trained, quantized, evaluated and fine-tuned on
# tensors:vectors.npz; bad inputs exit 2 naming the array and write nothing.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
CMP="${QFORGE_COMPARE_BIN:-$(dirname "$(dirname "$Q")")/tests/compare_tensors}"
if [ ! -x "$CMP" ]; then
  echo "FAIL: $CMP is not built (ninja tests/compare_tensors)"
  exit 1
fi
last_json() { tail -n 1 "$work/out.txt"; }
F=tests/fixtures/npy
common=(--batch-size 32 --seed 0 --threads 1 --progress none)

expect_rc 0 "run --help" -- "$Q" run --help
grep -q -- "--inputs" "$work/out.txt" || fail "run --help lacks --inputs"

# ---- an image model: train, quantize, run in every mode ------------------------------------------------
expect_rc 0 "train mnist-cnn" -- "$Q" train --model mnist-cnn --data synthetic:320 "${common[@]}" --epochs 1 --out "$work/cnn"
expect_rc 0 "quantize" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_q" --calib-batches 2 --threads 1
for m in fp32 sim exact int8; do
  expect_rc 0 "run --mode $m" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$F/digits.npz" --out "$work/$m.safetensors" \
    --mode "$m" --threads 1 --json
  last_json | grep -q "\"mode\":\"$m\"" || fail "run --mode $m: --json lacks the mode"
done
"$CMP" --list "$work/int8.safetensors" >"$work/list.txt" 2>&1 || fail "int8 output unreadable"
grep -q "int8" "$work/list.txt" || fail "run --mode int8 saved no output codes: $(cat "$work/list.txt")"
grep -q "\[4, 10\]\|4x10\|4,10" "$work/list.txt" || fail "run --mode int8: unexpected output shape: $(cat "$work/list.txt")"
# exact and int8: the same integers (0 differing) and the same dequantized floats
"$CMP" "$work/exact.safetensors" "$work/int8.safetensors" --exact >"$work/cmp.txt" 2>&1 ||
  fail "exact and int8 outputs differ: $(cat "$work/cmp.txt")"
# the integer modes are close to the float simulation, and fp32 equals eval's FP32 model on the same inputs
"$CMP" "$work/sim.safetensors" "$work/exact.safetensors" --tol 0.25 $(sed -n 's/^\([^\t]*\)\t.*f32.*/\1/p' "$work/list.txt") \
  >"$work/cmp.txt" 2>&1 || fail "sim and exact outputs are far apart: $(cat "$work/cmp.txt")"
expect_rc 0 "run fp32 on the float model dir" -- "$Q" run --model-dir "$work/cnn" --inputs "$F/digits.npz" \
  --out "$work/fp32_float.safetensors" --threads 1
"$CMP" "$work/fp32_float.safetensors" "$work/fp32.safetensors" --tol 1e-4 >"$work/cmp.txt" 2>&1 ||
  fail "fp32 of the float dir and of the quantized dir (BN folded) differ: $(cat "$work/cmp.txt")"
# a .safetensors written by run is replaced by a later run; a single-array .npy input is taken whatever its name
expect_rc 0 "run replaces its own output" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$F/digits.npz" \
  --out "$work/int8.safetensors" --mode int8 --threads 1

# the image model on tensors:FILE (float32 [N, 1, 28, 28]): calibration, evaluation in every mode, training
expect_rc 0 "quantize cnn on tensors" -- "$Q" quantize --model-dir "$work/cnn" --data "tensors:$F/digits.npz" \
  --out "$work/cnn_qt" --calib-batches 1 --threads 1
for m in sim exact int8; do
  expect_rc 0 "eval cnn tensors --mode $m" -- "$Q" eval --model-dir "$work/cnn_qt" --data "tensors:$F/digits.npz" \
    --mode "$m" --json
  last_json | grep -q '"samples":4' || fail "eval cnn --mode $m on digits.npz: expected 4 samples"
done
expect_rc 0 "train cnn on tensors" -- "$Q" train --model mnist-cnn --data "tensors:$F/digits.npz" "${common[@]}" \
  --epochs 1 --out "$work/cnn_t"

# ---- bad inputs: exit 2 naming the array, nothing written --------------------------------------------
bad() {  # bad DESCRIPTION PATTERN -- run args...
  local what=$1 pat=$2
  shift 3
  rm -f "$work/bad.safetensors"
  expect_rc 2 "$what" -- "$Q" run --model-dir "$work/cnn_q" --out "$work/bad.safetensors" --threads 1 "$@"
  grep -q -- "$pat" "$work/err.txt" || fail "$what: message lacks '$pat': $(cat "$work/err.txt")"
  [ -e "$work/bad.safetensors" ] && fail "$what: wrote an output"
  ls "$work" | grep -q '^\.bad' && fail "$what: left a temporary file"
}
expect_rc 0 "eval --save-logits" -- "$Q" eval --model-dir "$work/cnn_q" --save-logits "$work/logits.safetensors"
bad "wrong input name" "no array 'input' for the model's input 'input' (the file has: logits, targets)" -- \
  --inputs "$work/logits.safetensors" --mode int8
bad "wrong example shape" "'input' f32 \[6, 4\]" -- --inputs "$F/stored.npz" --mode fp32
bad "ragged npz" "array 'input'" -- --inputs "$F/bad_ragged.npz"
bad "0-d input" "scalar_0d" -- --inputs "$F/scalar_0d.npy" --mode exact
bad "bool input" "dtype '|b1'" -- --inputs "$F/b1.npy" --mode fp32
bad "missing input file" "does not exist" -- --inputs "$work/none.npz"
bad "unknown extension" "unknown tensor file type" -- --inputs tests/fixtures/npy/manifest.json
bad "unknown mode" "expected fp32, sim, exact or int8" -- --inputs "$F/digits.npz" --mode int4
bad "quantized mode on a float dir" "needs a quantized model directory" -- --inputs "$F/digits.npz" --mode int8 \
  --model-dir "$work/cnn"
cp "$F/digits.npz" "$work/trunc.npz" && truncate -s 5000 "$work/trunc.npz"
bad "truncated npz" "trunc.npz" -- --inputs "$work/trunc.npz" --mode int8
# --out: never a symbolic link, special file or a file run did not write
printf 'keep me' >"$work/other.safetensors"
expect_rc 2 "foreign --out" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$F/digits.npz" --out "$work/other.safetensors"
[ "$(cat "$work/other.safetensors")" = "keep me" ] || fail "a foreign --out file was replaced"
ln -s "$work/other.safetensors" "$work/link.safetensors"
expect_rc 2 "symlink --out" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$F/digits.npz" --out "$work/link.safetensors"
mkfifo "$work/fifo.safetensors"
expect_rc 2 "fifo --out" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$F/digits.npz" --out "$work/fifo.safetensors"
expect_rc 2 "fifo --inputs" -- "$Q" run --model-dir "$work/cnn_q" --inputs "$work/fifo.safetensors" \
  --out "$work/x.safetensors"
[ -e "$work/x.safetensors" ] && fail "fifo --inputs wrote an output"

# ---- a non-image model on tensors:FILE: train, quantize (calibration), eval in every mode, finetune, run --
cat >"$work/linear20.json" <<'EOF'
{"name": "linear20", "nodes": [
  {"name": "fc1", "type": "Linear", "args": {"in_features": 20, "out_features": 16}},
  {"name": "relu", "type": "ReLU"},
  {"name": "fc2", "type": "Linear", "args": {"in_features": 16, "out_features": 3}}]}
EOF
vec="tensors:$F/vectors.npz"
expect_rc 0 "train on tensors" -- "$Q" train --model "$work/linear20.json" --data "$vec" "${common[@]}" --epochs 4 \
  --out "$work/lin" --json
acc=$(last_json | grep -o '"accuracy":[0-9.]*' | head -1 | cut -d: -f2)
awk "BEGIN { exit !(${acc:-0} > 60) }" || fail "linear20 on vectors.npz: test accuracy ${acc:-?} <= 60%"
expect_rc 0 "quantize on tensors" -- "$Q" quantize --model-dir "$work/lin" --data "$vec" --out "$work/lin_q" \
  --calib-batches 2 --threads 1
for m in fp32 sim exact int8; do
  expect_rc 0 "eval tensors --mode $m" -- "$Q" eval --model-dir "$work/lin_q" --data "$vec" --mode "$m" --json
  last_json | grep -q '"samples":32' || fail "eval --mode $m on tensors: expected the 32 test samples"
done
expect_rc 0 "finetune on tensors" -- "$Q" finetune --model-dir "$work/lin_q" --data "$vec" --epochs 1 --out "$work/lin_ft" \
  "${common[@]}"
expect_rc 0 "run linear exact" -- "$Q" run --model-dir "$work/lin_q" --inputs "$F/vectors.npz" --out "$work/lx.safetensors" \
  --mode exact --threads 1 --json
last_json | grep -q '"ignored_arrays":\["label","test_input","test_label"\]' || fail "run did not list the unused arrays"
expect_rc 0 "run linear int8" -- "$Q" run --model-dir "$work/lin_q" --inputs "$F/vectors.npz" --out "$work/li.safetensors" \
  --mode int8 --threads 1
"$CMP" "$work/lx.safetensors" "$work/li.safetensors" --exact >"$work/cmp.txt" 2>&1 ||
  fail "linear20: exact and int8 outputs differ: $(cat "$work/cmp.txt")"
# a .npy input (one array, any name) for a single-input model; the same rows as in vectors.npz's test split
expect_rc 0 "run linear fp32 on .npy" -- "$Q" run --model-dir "$work/lin_q" --inputs "$F/vectors_x.npy" \
  --out "$work/lnpy.safetensors" --mode fp32 --threads 1 --json
last_json | grep -q '"fc2":{"dtype":"f32","shape":\[5,3\]}' || fail "run on .npy: unexpected outputs: $(last_json)"
# a two-input model (a + b into the trained linear20 layers): arrays named by the model's inputs, outputs equal
# to the single-input model's on a + b
mkdir -p "$work/two"
cat >"$work/two/model.json" <<'EOF'
{"name": "two", "inputs": ["a", "b"], "nodes": [
  {"name": "sum", "type": "Add", "inputs": ["a", "b"]},
  {"name": "fc1", "type": "Linear", "args": {"in_features": 20, "out_features": 16}},
  {"name": "relu", "type": "ReLU"},
  {"name": "fc2", "type": "Linear", "args": {"in_features": 16, "out_features": 3}}]}
EOF
cp "$work/lin/weights.safetensors" "$work/two/"
expect_rc 0 "run a two-input model" -- "$Q" run --model-dir "$work/two" --inputs "$F/pair.npz" --out "$work/two.safetensors" \
  --threads 1 --json
last_json | grep -q '"outputs":{"fc2":{"dtype":"f32","shape":\[3,3\]}}' || fail "two-input run: outputs $(last_json)"
expect_rc 0 "run the single-input twin on a + b" -- "$Q" run --model-dir "$work/lin" --inputs "$F/pair_sum.npy" \
  --out "$work/sum.safetensors" --threads 1
"$CMP" "$work/sum.safetensors" "$work/two.safetensors" --tol 1e-5 >"$work/cmp.txt" 2>&1 ||
  fail "two-input model differs from its single-input twin: $(cat "$work/cmp.txt")"
bad "two inputs, one missing" "no array 'a' for the model's input 'a'" -- --model-dir "$work/two" \
  --inputs "$F/vectors_x.npy"
sed 's/"a", "b"/"input", "test_input"/g' "$work/two/model.json" >"$work/two/m.json" && mv "$work/two/m.json" "$work/two/model.json"
bad "two inputs of different lengths" "array 'test_input' has 32 examples, 'input' 96" -- --model-dir "$work/two" \
  --inputs "$F/vectors.npz"
bad "a quantized mode on two inputs" "needs a quantized model directory" -- --model-dir "$work/two" \
  --inputs "$F/vectors.npz" --mode int8
# an unlabelled file calibrates (quantize) with targets ignored
expect_rc 0 "quantize on unlabelled tensors" -- "$Q" quantize --model-dir "$work/lin" --data "tensors:$F/unlabelled.npz" \
  --out "$work/lin_q2" --calib-batches 1 --threads 1
# a tensors file that does not fit: exit 2 naming the array
expect_rc 2 "tensors: bad label dtype" -- "$Q" eval --model-dir "$work/lin" --data "tensors:$F/bad_label_dtype.npz"
grep -q "array 'label'" "$work/err.txt" || fail "bad label dtype message does not name the array"

[ "$fails" -eq 0 ] && echo "test_run: all passed" || echo "test_run: $fails failed"
[ "$fails" -eq 0 ]

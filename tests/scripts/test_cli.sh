#!/usr/bin/env bash
# The qforge command line end to end on small synthetic data: every subcommand's --help, --json output,
# exit codes for bad input (2) with nothing written, resume bit-identical to an uninterrupted run, the
# quantize -> eval (sim/exact/int8) -> compare -> export -> bundle chain, and divergence handling.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
last_json() { tail -n 1 "$work/out.txt"; }

# --help everywhere
expect_rc 0 "qforge --help" -- "$Q" --help
for c in train eval quantize finetune export compare analyze bench models demo; do
  expect_rc 0 "qforge $c --help" -- "$Q" "$c" --help
done
expect_rc 2 "unknown command" -- "$Q" frobnicate
expect_rc 0 "models --json" -- "$Q" models --json
last_json | grep -q '"name":"mnist-cnn"' || fail "models --json lacks mnist-cnn"

# bad input: exit 2, a message naming the problem, nothing written
expect_rc 2 "unknown model" -- "$Q" train --model nope --out "$work/bad1"
grep -q "unknown model 'nope'" "$work/err.txt" || fail "unknown model message"
expect_rc 2 "missing data dir" -- "$Q" train --model mlp --data mnist:"$work/none" --out "$work/bad2"
expect_rc 2 "zero batch size" -- "$Q" train --model mlp --batch-size 0 --out "$work/bad3"
expect_rc 2 "negative lr" -- "$Q" train --model mlp --lr -1 --out "$work/bad4"
expect_rc 2 "unknown option" -- "$Q" train --model mlp --bogus 1 --out "$work/bad5"
for d in bad1 bad2 bad3 bad4 bad5; do [ -e "$work/$d" ] && fail "$d was created"; done
mkdir -p "$work/corrupt"
printf 'not gzip and not idx' >"$work/corrupt/t10k-images-idx3-ubyte"
printf 'x' >"$work/corrupt/t10k-labels-idx1-ubyte"
expect_rc 2 "corrupt IDX" -- "$Q" train --model mlp --data mnist:"$work/corrupt" --out "$work/bad6"
[ -e "$work/bad6" ] && fail "bad6 was created"

# train (json), eval, wrong-model out dir
common=(--data synthetic:640 --batch-size 32 --seed 0 --threads 1 --progress none)
expect_rc 0 "train mlp" -- "$Q" train --model mlp "${common[@]}" --epochs 2 --out "$work/mlp" --json
last_json | grep -q '"accuracy"' || fail "train --json lacks accuracy"
for f in model.json weights.safetensors report.json metrics.jsonl checkpoint; do
  [ -e "$work/mlp/$f" ] || fail "train did not write $f"
done
expect_rc 2 "out dir holds a different model" -- "$Q" train --model mnist-cnn "${common[@]}" --epochs 1 --out "$work/mlp"
expect_rc 0 "eval fp32" -- "$Q" eval --model-dir "$work/mlp" --json --save-logits "$work/logits.safetensors"
last_json | grep -q '"mode":"fp32"' || fail "eval --json lacks mode"
[ -s "$work/logits.safetensors" ] || fail "eval did not save logits"

# resume: stop after 25 steps, resume, compare with the uninterrupted run byte for byte
expect_rc 0 "train interrupted" -- "$Q" train --model mlp "${common[@]}" --epochs 2 --max-steps 25 --out "$work/mlp_r"
expect_rc 0 "train resumed" -- "$Q" train --resume "$work/mlp_r" "${common[@]}" --epochs 2
cmp -s "$work/mlp/weights.safetensors" "$work/mlp_r/weights.safetensors" || fail "resumed weights differ from uninterrupted run"

# divergence: a NaN/inf loss stops with exit 1 naming the step, keeping the last good checkpoint
expect_rc 1 "diverging run" -- "$Q" train --model mlp "${common[@]}" --epochs 1 --lr 1e12 --momentum 0.9 --out "$work/nan"
grep -qi "step" "$work/err.txt" || fail "divergence message does not name the step"

# corrupt weights -> exit 2 naming the file
cp -r "$work/mlp" "$work/mlp_bad"
head -c 100 "$work/mlp/weights.safetensors" >"$work/mlp_bad/weights.safetensors"
expect_rc 2 "truncated weights" -- "$Q" eval --model-dir "$work/mlp_bad"
grep -q "weights.safetensors" "$work/err.txt" || fail "truncated weights message does not name the file"

# quantization chain on a CNN
expect_rc 0 "train cnn" -- "$Q" train --model mnist-cnn "${common[@]}" --epochs 1 --out "$work/cnn"
expect_rc 0 "quantize" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_q" --calib-batches 4 --threads 1 --json
for f in encodings.json quantsim.json config.json weights.safetensors model.json; do
  [ -e "$work/cnn_q/$f" ] || fail "quantize did not write $f"
done
expect_rc 2 "quantize bad bitwidth" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_q17" --param-bw 17
for s in torch_minmax torch_moving_average torch_histogram; do  # PyTorch's observers (quant/torch_observers.hpp)
  expect_rc 0 "quantize --scheme $s" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_$s" --scheme "$s" --calib-batches 2 --threads 1 --json
  grep -q '"scale"' "$work/cnn_$s/encodings.json" || fail "quantize --scheme $s wrote no encodings"
done
[ -e "$work/cnn_q17" ] && fail "cnn_q17 was created"
expect_rc 0 "quantize with CLE + bias correction" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_cle" --cle --bias-correction empirical --calib-batches 4 --threads 1 --json
last_json | grep -q '"stage":"cle"' || fail "quantize --cle did not report the CLE stage"
expect_rc 2 "adaround with bias correction" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_bad" --adaround --bias-correction empirical
expect_rc 0 "analyze" -- "$Q" analyze --model-dir "$work/cnn_q" --out "$work/analysis" --no-sweeps --batches 2 --json
[ -s "$work/analysis/analysis.html" ] && [ -s "$work/analysis/analysis.json" ] || fail "analyze did not write its report"
grep -q "<svg" "$work/analysis/analysis.html" || fail "analysis.html has no inline SVG plot"
expect_rc 2 "adaround with 16-bit weights" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/cnn_q16" --param-bw 16 --adaround
for m in sim exact int8; do
  expect_rc 0 "eval $m" -- "$Q" eval --model-dir "$work/cnn_q" --mode $m --json
  last_json | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p' >"$work/acc_$m"
done
cmp -s "$work/acc_exact" "$work/acc_int8" || fail "int8 accuracy differs from exact simulation"
expect_rc 0 "compare" -- "$Q" compare --model-dir "$work/cnn_q" --samples 32 --json
last_json | grep -q '"exact_vs_int8_differing":0' || fail "compare: exact and int8 differ"
expect_rc 0 "export" -- "$Q" export --model-dir "$work/cnn_q" --out "$work/bundle" --json
expect_rc 0 "eval bundle" -- "$Q" eval --model-dir "$work/bundle" --data synthetic:640 --json
last_json | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p' >"$work/acc_bundle"
cmp -s "$work/acc_int8" "$work/acc_bundle" || fail "bundle accuracy differs from the int8 runtime's"
expect_rc 2 "eval --mode int8 on an FP32 dir" -- "$Q" eval --model-dir "$work/cnn" --mode int8
expect_rc 0 "finetune" -- "$Q" finetune --model-dir "$work/cnn_q" --out "$work/cnn_qat" --epochs 1 --range-learning lsq --progress none --threads 1 --json
[ -e "$work/cnn_qat/encodings.json" ] || fail "finetune did not write encodings.json"
last_json | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p' >"$work/acc_qat"
expect_rc 0 "eval fine-tuned" -- "$Q" eval --model-dir "$work/cnn_qat" --json
last_json | sed -n 's/.*"accuracy":\([0-9.e+-]*\).*/\1/p' >"$work/acc_qat_reload"
cmp -s "$work/acc_qat" "$work/acc_qat_reload" || fail "reloaded fine-tuned model does not reproduce its accuracy"

echo "test_cli: $fails failure(s)"
[ "$fails" -eq 0 ]

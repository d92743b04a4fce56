#!/usr/bin/env bash
# Issue 12 regression checks through the command line: output discipline (never delete user data, --force,
# overlap, lock, sets replaced whole, single-file targets), checkpoint-state confinement, CLI value
# validation (no SIGFPE/SIGSEGV, exit 2), non-finite weights refused, divergence (exit 1), resume with the
# stored configuration, SIGTERM, the text vocabulary. QFORGE_BIN overrides the binary.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
intact() {  # intact FILE CONTENT DESCRIPTION
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] || fail "$3: $1 was changed or deleted"
}
no_leftovers() {  # no temporaries or lock files next to outputs
  local left
  left=$(find "$work" -maxdepth 2 \( -name '*.qforge-tmp-*' -o -name '*.qforge-lock' -o -name '*.qforge-old-*' \) | head -n 3)
  [ -z "$left" ] || fail "$1: left behind $left"
}

common=(--data synthetic:640 --batch-size 32 --seed 0 --threads 1 --progress none)
expect_rc 0 "train cnn" -- "$Q" train --model mnist-cnn "${common[@]}" --epochs 1 --out "$work/cnn"
expect_rc 0 "quantize" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/q" --calib-batches 2 --threads 1

# ---- export --out: user data is never deleted ----------------------------------------------------------
mkdir -p "$work/user" && echo keep >"$work/user/precious.txt"
expect_rc 2 "export over a user directory" -- "$Q" export --model-dir "$work/q" --out "$work/user"
expect_rc 2 "export --force over a user directory" -- "$Q" export --model-dir "$work/q" --out "$work/user" --force
intact "$work/user/precious.txt" keep "export --out user dir"
(cd "$work/user" && "$Q" export --model-dir "$work/q" --out . --force >/dev/null 2>&1)
[ $? -eq 2 ] || fail "export --out . : expected exit 2"
intact "$work/user/precious.txt" keep "export --out ."
expect_rc 2 "export --out = --model-dir" -- "$Q" export --model-dir "$work/q" --out "$work/q" --force
expect_rc 2 "export --out inside --model-dir" -- "$Q" export --model-dir "$work/q" --out "$work/q/bundle"
[ -e "$work/q/bundle" ] && fail "export wrote inside the model directory"
expect_rc 0 "export" -- "$Q" export --model-dir "$work/q" --out "$work/bundle"
expect_rc 2 "export again without --force" -- "$Q" export --model-dir "$work/q" --out "$work/bundle"
expect_rc 0 "export --force over its own bundle" -- "$Q" export --model-dir "$work/q" --out "$work/bundle" --force
# two exports to one --out at once: whoever reports success leaves a bundle that loads
for i in 1 2; do ("$Q" export --model-dir "$work/q" --out "$work/bundle2" --force >/dev/null 2>"$work/exp$i.err"; echo $? >"$work/exp$i.rc") & done
wait
ok=0
for i in 1 2; do [ "$(cat "$work/exp$i.rc")" = 0 ] && ok=$((ok + 1)); done
[ "$ok" -ge 1 ] || fail "concurrent exports: none succeeded ($(cat "$work"/exp*.err))"
expect_rc 0 "bundle of concurrent exports evaluates" -- "$Q" eval --model-dir "$work/bundle2" --data synthetic:640
no_leftovers "export"

# ---- quantize: sets replaced whole; a failed run leaves the old output as it was ------------------------
expect_rc 2 "quantize over an existing output without --force" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/q" --calib-batches 2
expect_rc 2 "quantize over a user directory" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/user" --force
intact "$work/user/precious.txt" keep "quantize --out user dir"
echo stale >"$work/q/stale-from-before.txt"
expect_rc 0 "quantize --force" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/q" --calib-batches 2 --param-bw 4 --force
[ -e "$work/q/stale-from-before.txt" ] && fail "quantize --force kept a file of the old output (not replaced as a set)"
grep -q '"param_bw": 4' "$work/q/quantsim.json" || fail "quantize --force did not publish the new output"
cp -r "$work/cnn" "$work/cnn_badw" && rm "$work/cnn_badw/.qforge-output"
head -c 100 "$work/cnn/weights.safetensors" >"$work/cnn_badw/weights.safetensors"
cp "$work/q/encodings.json" "$work/enc_before.json"
expect_rc 2 "quantize --force from a corrupt model" -- "$Q" quantize --model-dir "$work/cnn_badw" --out "$work/q" --force
cmp -s "$work/enc_before.json" "$work/q/encodings.json" || fail "a failed quantize changed the existing output"
no_leftovers "quantize"

# ---- train --out / --force ------------------------------------------------------------------------------
expect_rc 2 "train over a user directory" -- "$Q" train --model mlp "${common[@]}" --out "$work/user" --force
intact "$work/user/precious.txt" keep "train --out user dir"
expect_rc 2 "train over an existing run without --force/--resume" -- "$Q" train --model mnist-cnn "${common[@]}" --out "$work/cnn"
expect_rc 2 "train --out inside its data" -- "$Q" train --model mlp --data mnist:"$work/user" --out "$work/user/run"

expect_rc 0 "train a run to replace" -- "$Q" train --model mlp "${common[@]}" --epochs 1 --out "$work/old_run"
expect_rc 0 "train --force over a previous run" -- "$Q" train --model mnist-cnn "${common[@]}" --epochs 1 --max-steps 3 --out "$work/old_run" --force
grep -q '"mnist-cnn"' "$work/old_run/report.json" || fail "train --force did not replace the previous run"
[ -e "$work/old_run/weights.safetensors" ] && fail "train --force kept the old run's final weights (mixed set)"

# ---- eval --save-logits: links and special files are refused, never replaced ----------------------------
echo keep >"$work/target.txt"
ln -s "$work/target.txt" "$work/link.safetensors"
expect_rc 2 "--save-logits to a symlink" -- "$Q" eval --model-dir "$work/cnn" --save-logits "$work/link.safetensors"
[ -L "$work/link.safetensors" ] || fail "--save-logits replaced the symlink"
intact "$work/target.txt" keep "--save-logits symlink target"
# A special file of our own, never the machine's /dev/null: a regression would replace it by a regular file
# and break every later redirection on this machine. A character device (as root) or else a FIFO; the
# timeout guards against a regression that opens the FIFO and waits for a reader.
if mknod "$work/special" c 1 3 2>/dev/null || mkfifo "$work/special"; then
  expect_rc 2 "--save-logits to a special file" -- timeout 120 "$Q" eval --model-dir "$work/cnn" --save-logits "$work/special"
  [ -c "$work/special" ] || [ -p "$work/special" ] || fail "--save-logits replaced the special file"
fi
expect_rc 2 "--save-logits over a non-logits file" -- "$Q" eval --model-dir "$work/cnn" --save-logits "$work/cnn/weights.safetensors"
expect_rc 0 "--save-logits" -- "$Q" eval --model-dir "$work/cnn" --save-logits "$work/logits.safetensors"
expect_rc 0 "--save-logits over its own file" -- "$Q" eval --model-dir "$work/cnn" --save-logits "$work/logits.safetensors"

# ---- checkpoint state confinement ------------------------------------------------------------------------
expect_rc 0 "train stopped early" -- "$Q" train --model mlp "${common[@]}" --epochs 2 --lr 0.05 --max-steps 5 --out "$work/run"
echo keep >"$work/victim.txt"
cp "$work/run/checkpoint/state.json" "$work/state.good"
sed -e "s#\"model_file\": *\"[^\"]*\"#\"model_file\": \"../../victim.txt\"#" \
    -e "s#\"optimizer_file\": *\"[^\"]*\"#\"optimizer_file\": \"$work/victim.txt\"#" "$work/state.good" >"$work/run/checkpoint/state.json"
expect_rc 2 "resume with state.json naming files outside" -- "$Q" train --resume "$work/run"
intact "$work/victim.txt" keep "checkpoint state confinement"
cp "$work/state.good" "$work/run/checkpoint/state.json"

# a quantized directory's quantsim.json may not point at a config file outside the directory
cp -r "$work/q" "$work/q_cfg" && rm "$work/q_cfg/config.json" "$work/q_cfg/.qforge-output"
sed -i 's#"config": *"[^"]*"#"config": "/etc/passwd"#' "$work/q_cfg/quantsim.json"
expect_rc 2 "quantsim.json naming a config outside its directory" -- "$Q" eval --model-dir "$work/q_cfg"

# ---- resume continues the stored configuration ----------------------------------------------------------
expect_rc 2 "resume with a conflicting --epochs" -- "$Q" train --resume "$work/run" --epochs 3
expect_rc 2 "resume with a conflicting --lr" -- "$Q" train --resume "$work/run" --lr 0.5
expect_rc 0 "resume as printed" -- "$Q" train --resume "$work/run" --threads 1 --progress none --json
grep -q '"epochs": 2' "$work/run/report.json" || fail "resume did not keep the run's 2 epochs"
grep -q '"lr": 0.05' "$work/run/report.json" || fail "resume did not keep the run's learning rate"
tail -n 1 "$work/out.txt" | grep -q '"finished":true' || fail "resumed run did not finish"
expect_rc 0 "reference run" -- "$Q" train --model mlp "${common[@]}" --epochs 2 --lr 0.05 --out "$work/run_ref"
cmp -s "$work/run/weights.safetensors" "$work/run_ref/weights.safetensors" || fail "resumed run differs from an uninterrupted one"

# finetune --resume continues its stored configuration too
expect_rc 0 "finetune stopped early" -- "$Q" finetune --model-dir "$work/q" --out "$work/ft" --epochs 2 --lr 2e-3 --max-steps 3 --progress none --threads 1
expect_rc 2 "finetune resume with a conflicting --epochs" -- "$Q" finetune --model-dir "$work/q" --out "$work/ft" --resume --epochs 5
expect_rc 2 "finetune again without --resume/--force" -- "$Q" finetune --model-dir "$work/q" --out "$work/ft"
expect_rc 0 "finetune resumed" -- "$Q" finetune --model-dir "$work/q" --out "$work/ft" --resume --progress none --threads 1 --json
tail -n 1 "$work/out.txt" | grep -q '"epochs_completed":2' || fail "finetune resume did not continue the stored 2 epochs"

# ---- CLI values: no crash, exit 2 -------------------------------------------------------------------------
expect_rc 2 "--log-every 0" -- "$Q" train --model mlp "${common[@]}" --log-every 0 --out "$work/v1"
expect_rc 2 "--threads 100000" -- "$Q" train --model mlp --data synthetic:640 --threads 100000 --out "$work/v2"
expect_rc 2 "eval --threads 100000" -- "$Q" eval --model-dir "$work/cnn" --threads 100000
expect_rc 2 "--threads -1" -- "$Q" quantize --model-dir "$work/cnn" --out "$work/v3" --threads -1
expect_rc 2 "--epochs abc" -- "$Q" train --model mlp "${common[@]}" --epochs abc --out "$work/v4"
expect_rc 2 "--lr nan" -- "$Q" train --model mlp "${common[@]}" --lr nan --out "$work/v5"
expect_rc 2 "--lr inf" -- "$Q" train --model mlp "${common[@]}" --lr inf --out "$work/v6"
expect_rc 2 "--momentum 1.5" -- "$Q" train --model mlp "${common[@]}" --momentum 1.5 --out "$work/v7"
expect_rc 2 "--weight-decay -1" -- "$Q" train --model mlp "${common[@]}" --weight-decay -1 --out "$work/v8"
expect_rc 2 "--clip-grad-norm -1" -- "$Q" train --model mlp "${common[@]}" --clip-grad-norm -1 --out "$work/v9"
expect_rc 2 "--seq-len 0" -- "$Q" train --model mlp "${common[@]}" --seq-len 0 --out "$work/v10"
expect_rc 2 "--max-steps -1" -- "$Q" train --model mlp "${common[@]}" --max-steps -1 --out "$work/v11"
expect_rc 2 "finetune --log-every 0" -- "$Q" finetune --model-dir "$work/q" --out "$work/v12" --log-every 0
expect_rc 2 "finetune --range-lr -1" -- "$Q" finetune --model-dir "$work/q" --out "$work/v13" --range-lr -1
expect_rc 2 "--schedule bogus" -- "$Q" train --model mlp "${common[@]}" --schedule bogus --out "$work/v14"
expect_rc 2 "finetune --schedule bogus" -- "$Q" finetune --model-dir "$work/q" --out "$work/v15" --schedule bogus
expect_rc 2 "eval --batch-size x" -- "$Q" eval --model-dir "$work/cnn" --batch-size x
for d in v1 v2 v3 v4 v5 v6 v7 v8 v9 v10 v11 v12 v13 v14 v15; do [ -e "$work/$d" ] && fail "$d was created"; done
# malformed JSON content in a model directory: exit 2, not an uncaught library error
cp -r "$work/cnn" "$work/cnn_rep" && echo '[1, 2]' >"$work/cnn_rep/report.json"
expect_rc 2 "report.json that is not an object" -- "$Q" eval --model-dir "$work/cnn_rep"

# ---- non-finite weights are refused at load, naming the tensor --------------------------------------------
if command -v python3 >/dev/null 2>&1; then
cp -r "$work/cnn" "$work/cnn_nan" && rm "$work/cnn_nan/.qforge-output"
python3 - "$work/cnn_nan/weights.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
name = sorted(k for k in h if k != '__metadata__' and h[k]['dtype'] == 'F32')[0]
off = 8 + n + h[name]['data_offsets'][0]
b[off:off + 4] = struct.pack('<f', float('nan'))
open(p, 'wb').write(b)
EOF
expect_rc 2 "eval with a NaN weight" -- "$Q" eval --model-dir "$work/cnn_nan"
grep -q "non-finite" "$work/err.txt" || fail "NaN weight message does not say non-finite"
expect_rc 2 "quantize with a NaN weight" -- "$Q" quantize --model-dir "$work/cnn_nan" --out "$work/q_nan"
[ -e "$work/q_nan" ] && fail "quantize of NaN weights wrote an output"
else
  echo "skipping the NaN-weight checks: python3 not found"
fi

# ---- divergence: exit 1, step named, last good checkpoint kept ----------------------------------------------
expect_rc 1 "train --lr 1e10" -- "$Q" train --model mlp "${common[@]}" --epochs 1 --lr 1e10 --out "$work/div"
grep -q "diverged" "$work/err.txt" && grep -q "step" "$work/err.txt" || fail "divergence message lacks 'diverged'/'step'"
[ -e "$work/div/weights.safetensors" ] && fail "a diverged run wrote final weights"

# ---- SIGTERM is handled like SIGINT: checkpoint, clean exit, resumable --------------------------------------
"$Q" train --model mlp --data synthetic:2000 --batch-size 16 --seed 0 --threads 1 --progress none --epochs 200 \
  --log-every 1 --out "$work/term" >/dev/null 2>"$work/term.err" &
pid=$!
for _ in $(seq 1 200); do [ -s "$work/term/metrics.jsonl" ] && break; sleep 0.1; done
expect_rc 2 "a second writer of a running training's --out" -- "$Q" train --model mlp "${common[@]}" --out "$work/term" --force
grep -q "another qforge command" "$work/err.txt" || fail "concurrent writer message does not mention the lock"
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "SIGTERM: exit $rc, expected 0 (clean stop)"
grep -q "stop requested" "$work/term.err" || fail "SIGTERM: no 'stop requested' message"
[ -e "$work/term/checkpoint/state.json" ] || fail "SIGTERM: no checkpoint written"

# ---- text models carry their vocabulary ------------------------------------------------------------------
words=("the " "cat " "sat " "on " "mat " "and " "dog " "ran ")
RANDOM=1
: >"$work/a.txt"
for _ in $(seq 1 900); do printf '%s' "${words[RANDOM % 8]}" >>"$work/a.txt"; done
tr 'a-z' 'A-Z' <"$work/a.txt" >"$work/b.txt"
expect_rc 0 "train char-lstm" -- "$Q" train --model char-lstm --data text:"$work/a.txt" --seq-len 20 --epochs 1 --batch-size 16 --threads 1 --progress none --out "$work/lm"
grep -q '"vocab"' "$work/lm/report.json" || fail "char-lstm model directory lacks its vocabulary"
expect_rc 0 "eval char-lstm on its text" -- "$Q" eval --model-dir "$work/lm"
expect_rc 2 "eval char-lstm on another character set" -- "$Q" eval --model-dir "$work/lm" --data text:"$work/b.txt"
grep -q "vocabulary" "$work/err.txt" || fail "vocabulary mismatch message"

no_leftovers "end"
echo "test_outputs: $fails failure(s)"
[ "$fails" -eq 0 ]

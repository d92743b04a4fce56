#!/usr/bin/env bash
# Issue 16: data-parallel training and calibration under mpirun (docs/distributed.md).
#   - N = 1 under mpirun writes the bytes of the plain program (train and quantize);
#   - lstm (no BatchNorm, no Dropout): N = 2 with per-rank batch B/2 matches one process with batch B after
#     an epoch within float-reduction tolerance; N = 2 twice gives identical bytes (mnist-cnn too);
#   - calibration (quantize: tf, tf_enhanced, torch_moving_average) with N = 2 writes the encodings of N = 1;
#   - a rank killed mid-epoch ends the job with a message; the last checkpoint resumes with N = 1;
#   - a failure on every rank (bad option) is one message and exit 2; other commands refuse N > 1.
# A build without MPI must say "built without MPI" (exit 2) when a launcher starts it as one of N > 1.
# QFORGE_BIN overrides the binary; QFORGE_COMPARE_BIN the tensor comparison tool.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/scripts/lib/cli_harness.sh
CMP="${QFORGE_COMPARE_BIN:-$(dirname "$(dirname "$Q")")/tests/compare_tensors}"

if ! grep -q libmpi <<<"$(ldd "$Q" 2>/dev/null)"; then  # (no pipe: grep -q + pipefail would see SIGPIPE)
  # Built without MPI: a launcher's N > 1 is refused, N = 1 and a plain start work as before.
  OMPI_COMM_WORLD_SIZE=2 "$Q" train --model mlp --data synthetic:64 --epochs 1 --out "$work/x" --progress none \
    >"$work/out.txt" 2>"$work/err.txt"
  rc=$?
  [ "$rc" -eq 2 ] || fail "without MPI, started as 1 of 2: exit $rc, expected 2"
  grep -q "built without MPI" "$work/err.txt" || fail "without MPI: no 'built without MPI' message"
  echo "REPORT: qforge built without MPI: checked only the refusal (install libopenmpi-dev, rebuild)"
  [ "$fails" -eq 0 ] && echo "PASS: test_mpi (no MPI)" || echo "$fails failures"
  exit $((fails > 0))
fi
if ! command -v mpirun >/dev/null; then
  echo "FAIL: qforge is built with MPI but mpirun is missing (scripts/setup.sh installs openmpi-bin)"
  exit 1
fi
[ -x "$CMP" ] || { echo "FAIL: $CMP is not built (ninja tests/compare_tensors)"; exit 1; }

# Quiet, local-only OpenMPI (a container has no InfiniBand; shared memory between two local ranks).
export OMPI_MCA_btl="self,vader,tcp" OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
T=(--threads 1 --progress none --seed 3 --epochs 1)

# ---- N = 1 under mpirun == plain -------------------------------------------------------------------
expect_rc 0 "plain train mnist-cnn" -- "$Q" train --model mnist-cnn --data synthetic:400 --batch-size 32 "${T[@]}" --out "$work/plain"
expect_rc 0 "mpirun -np 1 train mnist-cnn" -- "${MPI[@]}" -np 1 "$Q" train --model mnist-cnn --data synthetic:400 \
  --batch-size 32 "${T[@]}" --out "$work/np1"
cmp -s "$work/plain/weights.safetensors" "$work/np1/weights.safetensors" || fail "N=1 under mpirun: weights differ from the plain run"
for f in $(cd "$work/plain/checkpoint" && ls); do
  cmp -s "$work/plain/checkpoint/$f" "$work/np1/checkpoint/$f" || fail "N=1 under mpirun: checkpoint/$f differs"
done

# ---- N = 2: deterministic, and equal to one process of the global batch ----------------------------
for i in 1 2; do
  expect_rc 0 "mpirun -np 2 train mnist-cnn ($i)" -- "${MPI[@]}" -np 2 "$Q" train --model mnist-cnn --data synthetic:400 \
    --batch-size 16 "${T[@]}" --out "$work/np2_$i"
done
cmp -s "$work/np2_1/weights.safetensors" "$work/np2_2/weights.safetensors" || fail "N=2 twice: weights differ"
cmp -s "$work/np2_1/metrics.jsonl" /dev/null && fail "N=2: empty metrics.jsonl"
[ -e "$work/np2_1/report.json" ] || fail "N=2: rank 0 wrote no report.json"

expect_rc 0 "lstm, one process, batch 32" -- "$Q" train --model lstm --data synthetic:320 --batch-size 32 "${T[@]}" \
  --lr 0.01 --out "$work/lstm1"
expect_rc 0 "lstm, mpirun -np 2, batch 16 per rank" -- "${MPI[@]}" -np 2 "$Q" train --model lstm --data synthetic:320 \
  --batch-size 16 "${T[@]}" --lr 0.01 --json --out "$work/lstm2"
"$CMP" "$work/lstm1/weights.safetensors" "$work/lstm2/weights.safetensors" --tol 1e-4 >"$work/cmp.txt" 2>&1 ||
  { fail "lstm N=2 x 16 vs N=1 x 32: weights differ beyond 1e-4"; head -n 5 "$work/cmp.txt"; }
cmp -s "$work/lstm1/weights.safetensors" "$work/lstm2/weights.safetensors" &&
  echo "REPORT: lstm N=2 x 16 equals N=1 x 32 bit for bit"
[ "$(grep -c '"epochs_completed"' "$work/out.txt")" -eq 1 ] || fail "--json under N=2: expected one result line (rank 0)"
worst=$("$CMP" "$work/lstm1/weights.safetensors" "$work/lstm2/weights.safetensors" --tol 1 2>/dev/null |
  awk '{for (i = 1; i <= NF; i++) if ($i ~ /^rel/) print $(i + 1)}' | sort -g | tail -n 1)
echo "REPORT: lstm one epoch, N=2 x 16 vs N=1 x 32: largest relative weight difference ${worst:-?}"

# ---- calibration: N = 2 == N = 1 -------------------------------------------------------------------
Qz=(quantize --model-dir "$work/plain" --calib-batches 4 --batch-size 16 --threads 1 --seed 1)
expect_rc 0 "quantize plain" -- "$Q" "${Qz[@]}" --out "$work/q_plain"
expect_rc 0 "quantize mpirun -np 1" -- "${MPI[@]}" -np 1 "$Q" "${Qz[@]}" --out "$work/q1"
expect_rc 0 "quantize mpirun -np 2" -- "${MPI[@]}" -np 2 "$Q" "${Qz[@]}" --out "$work/q2"
cmp -s "$work/q_plain/encodings.json" "$work/q1/encodings.json" || fail "quantize N=1 under mpirun: encodings differ"
cmp -s "$work/q_plain/encodings.json" "$work/q2/encodings.json" || fail "quantize N=2: encodings differ from N=1"
expect_rc 0 "quantize tf_enhanced plain" -- "$Q" "${Qz[@]}" --scheme tf_enhanced --out "$work/qh1"
expect_rc 0 "quantize tf_enhanced mpirun -np 2" -- "${MPI[@]}" -np 2 "$Q" "${Qz[@]}" --scheme tf_enhanced --out "$work/qh2"
cmp -s "$work/qh1/encodings.json" "$work/qh2/encodings.json" || fail "quantize tf_enhanced N=2: encodings differ from N=1"
expect_rc 0 "quantize torch_moving_average plain" -- "$Q" "${Qz[@]}" --scheme torch_moving_average --out "$work/qm1"
expect_rc 0 "quantize torch_moving_average mpirun -np 2" -- "${MPI[@]}" -np 2 "$Q" "${Qz[@]}" --scheme torch_moving_average \
  --out "$work/qm2"
cmp -s "$work/qm1/encodings.json" "$work/qm2/encodings.json" || fail "quantize torch_moving_average N=2: encodings differ"
expect_rc 2 "quantize N=2 with fewer calibration batches than ranks" -- "${MPI[@]}" -np 2 "$Q" quantize \
  --model-dir "$work/plain" --calib-batches 1 --threads 1 --out "$work/q3"
grep -q "calibration batches cannot be shared" "$work/err.txt" || fail "calib-batches < ranks: no clear message"

# ---- finetune (QAT with learnable ranges) runs under N = 2 deterministically ------------------------
for i in 1 2; do
  expect_rc 0 "finetune mpirun -np 2 ($i)" -- "${MPI[@]}" -np 2 "$Q" finetune --model-dir "$work/q_plain" --epochs 1 \
    --batch-size 16 --lr 1e-3 --range-learning aimet --threads 1 --progress none --out "$work/ft$i"
done
cmp -s "$work/ft1/encodings.json" "$work/ft2/encodings.json" || fail "finetune N=2 twice: encodings differ"

# ---- a rank killed mid-epoch; resume with N = 1 ------------------------------------------------------
"${MPI[@]}" -np 2 "$Q" train --model mlp --data synthetic:4000 --batch-size 8 "${T[@]}" --checkpoint-every 20 \
  --out "$work/kill" >"$work/kill.out" 2>"$work/kill.err" &
mpipid=$!
for _ in $(seq 1 300); do [ -e "$work/kill/checkpoint/state.json" ] && break; sleep 0.1; done
victim=""
for p in $(pgrep -P "$mpipid"); do
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
done
if [ -z "$victim" ] || [ ! -e "$work/kill/checkpoint/state.json" ]; then
  fail "kill test: no checkpoint or no rank 1 to kill (job finished too early?)"
  wait "$mpipid"
else
  kill -9 "$victim"
  wait "$mpipid"
  rc=$?
  [ "$rc" -ne 0 ] || fail "killed rank: mpirun exited 0"
  grep -qiE "exited on signal|killed|aborted" "$work/kill.err" || { fail "killed rank: no message"; tail -n 5 "$work/kill.err"; }
  [ -e "$work/kill/weights.safetensors" ] && fail "killed run wrote final weights"
  expect_rc 0 "resume the killed N=2 run with N=1 (global batch 16)" -- "$Q" train --resume "$work/kill" --batch-size 16 \
    --threads 1 --progress none
  [ -e "$work/kill/weights.safetensors" ] || fail "resumed run: no weights.safetensors"
  grep -q '"event":"epoch"' "$work/kill/metrics.jsonl" || fail "resumed run: no epoch line in metrics.jsonl"
  echo "REPORT: killed rank: $(grep -iE 'exited on signal|killed' "$work/kill.err" | head -n 1)"
fi

# ---- a NaN in one rank's data: every rank stops at the same step, one message, exit 1 --------------------
make_nan() {  # make_nan FILE: 16 zero images (a NaN pixel in example 0), labels 0, as safetensors
  local hdr='{"input":{"dtype":"F32","shape":[16,1,28,28],"data_offsets":[0,50176]},"label":{"dtype":"I32","shape":[16],"data_offsets":[50176,50240]}}'
  while [ $((${#hdr} % 8)) -ne 0 ]; do hdr="$hdr "; done
  local n=${#hdr}
  { printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8)))"
    printf '%s' "$hdr"; printf '\x00\x00\xc0\x7f'; head -c $((50176 - 4 + 64)) /dev/zero; } >"$1"
}
make_nan "$work/nan.safetensors"
expect_rc 1 "NaN input on one rank" -- "${MPI[@]}" -np 2 "$Q" train --model mlp --data "tensors:$work/nan.safetensors" \
  --batch-size 4 "${T[@]}" --out "$work/nan"
[ "$(grep -c 'training diverged' "$work/err.txt")" -eq 1 ] || { fail "NaN on one rank: expected one 'training diverged' message"; cat "$work/err.txt" | head -n 5; }

# ---- errors: one message; commands that do not run distributed refuse N > 1 ---------------------------
expect_rc 2 "bad option on every rank" -- "${MPI[@]}" -np 2 "$Q" train --model mlp --data synthetic:64 --epochs 0 \
  --out "$work/bad" --progress none
[ "$(grep -c 'epochs' "$work/err.txt")" -ge 1 ] || fail "bad option: no message naming --epochs"
expect_rc 2 "eval under N=2" -- "${MPI[@]}" -np 2 "$Q" eval --model-dir "$work/plain"
grep -q "only train, finetune and quantize" "$work/err.txt" || fail "eval under N=2: no clear refusal"

no_leftovers=$(find "$work" -maxdepth 2 \( -name '*.qforge-tmp-*' -o -name '*.qforge-lock' \) | head -n 3)
[ -z "$no_leftovers" ] || fail "left behind $no_leftovers"
[ "$fails" -eq 0 ] && echo "PASS: test_mpi" || echo "$fails failures"
exit $((fails > 0))

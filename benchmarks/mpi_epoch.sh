#!/usr/bin/env bash
# One training epoch of mnist-cnn and lstm on this machine: N = 2 ranks x 1 thread (mpirun, per-rank batch
# B/2) against N = 1 process x 2 threads (batch B), and rank 0's time in communication per step (the ring
# allreduce of the gradients plus the step-status allreduce, including waiting for the slower rank).
# Prints one row per configuration: model, ranks x threads, seconds per epoch (training only, the
# evaluation excluded), steps, communication ms per step, its share of the epoch.
#
#   benchmarks/mpi_epoch.sh [SAMPLES] [GLOBAL_BATCH] [REPEATS]       (QFORGE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
Q="${QFORGE_BIN:-$PWD/build/apps/qforge}"
samples=${1:-2560}
batch=${2:-64}
repeats=${3:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_btl="self,vader,tcp" OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none)

epoch_json() {  # the epoch line of a run's metrics.jsonl
  grep '"event":"epoch"' "$1/metrics.jsonl" | tail -n 1
}
field() {  # field JSON KEY
  sed -E "s/.*\"$2\":([-0-9.eE+]+).*/\1/" <<<"$1"
}

printf '%-10s %-12s %10s %6s %14s %8s\n' model ranks×thr s/epoch steps comm_ms/step comm%
for model in mnist-cnn lstm; do
  for rep in $(seq 1 "$repeats"); do
    common=(train --model "$model" --data "synthetic:$samples" --epochs 1 --seed 1 --progress none)
    "$Q" "${common[@]}" --batch-size "$batch" --threads 2 --out "$work/n1" --force >/dev/null 2>&1
    e=$(epoch_json "$work/n1")
    steps=$(field "$e" step)
    printf '%-10s %-12s %10.2f %6d %14s %8s\n' "$model" "1x2" "$(field "$e" train_seconds)" "$steps" "-" "-"
    "${MPI[@]}" -np 2 "$Q" "${common[@]}" --batch-size $((batch / 2)) --threads 1 --out "$work/n2" --force >/dev/null 2>&1
    e=$(epoch_json "$work/n2")
    secs=$(field "$e" train_seconds)
    comm=$(field "$e" comm_seconds)
    steps=$(field "$e" step)
    printf '%-10s %-12s %10.2f %6d %14.3f %7.1f%%\n' "$model" "2x1" "$secs" "$steps" \
      "$(awk -v c="$comm" -v s="$steps" 'BEGIN { print 1000 * c / s }')" \
      "$(awk -v c="$comm" -v t="$secs" 'BEGIN { print 100 * c / t }')"
  done
done

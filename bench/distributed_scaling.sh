#!/usr/bin/env bash
# Data-parallel scaling of train_cnn on this machine: images per second of one training epoch of
# the reference CNN on Fashion-MNIST, batch 64 per process, for one process (plain, 1 and all
# threads) and for K = 1, 2, ... processes under mpirun (--distributed, with and without
# --sync-bn, the cores shared out between the processes), plus what each step exchanges.
# usage: bash bench/distributed_scaling.sh [build-dir] [max processes]   (default build/release, nproc)
# Needs Open MPI (scripts/setup.sh installs it) and Fashion-MNIST (scripts/demo.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(pwd)/${1:-build/release}/train_cnn
max=${2:-$(nproc)}
[[ -x $bin ]] || { echo "distributed_scaling: $bin not found: build it first" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "distributed_scaling: mpirun not found: apt-get install openmpi-bin" >&2; exit 2; }
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# The epoch's training time, from the line "epoch 1: ..., 12.3 s" (evaluation not included).
seconds() { sed -n 's/^epoch 1: .*, \([0-9.]*\) s.*/\1/p'; }
row() { # label, command...
  local label=$1
  shift
  local out s
  out=$("$@" --epochs 1 2>&1) || { echo "distributed_scaling: '$*' failed:" >&2; tail -5 <<<"$out" >&2; exit 1; }
  s=$(seconds <<<"$out")
  awk -v l="$label" -v s="$s" 'BEGIN { printf "| %s | %s | %.0f |\n", l, s, 60000 / s }'
  grep -h '^distributed:' <<<"$out" >&2 || true
}
echo "| run | s / epoch | img/s |"
echo "|---|---|---|"
row "1 process, 1 thread" "$bin" --threads 1
row "1 process, $(nproc) threads" "$bin"
# --bind-to none: for 2 processes or fewer Open MPI binds each to one core, which would leave a
# single process one thread; train_cnn shares the machine's cores out between its processes itself.
for ((k = 1; k <= max; k++)); do
  mpi=(timeout 3600 mpirun -np "$k" --oversubscribe --bind-to none "$bin" --distributed)
  row "$k process(es), --distributed" "${mpi[@]}"
  row "$k process(es), --distributed --sync-bn" "${mpi[@]}" --sync-bn
done

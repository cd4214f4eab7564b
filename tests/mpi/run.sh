#!/usr/bin/env bash
# The MPI tests, each a job of 2 processes under mpirun (--oversubscribe: a machine may have
# fewer cores), every mpirun bounded by a timeout:
#   equivalence  tests/mpi/equivalence.c: data parallelism, with and without SyncBatchNorm,
#                against one process on the same samples;
#   train_cnn    train_cnn --distributed --sync-bn as a user runs it: rank 0 alone prints and
#                writes (the checkpoint atomically), every rank resumes, and 2 + 1 epochs with a
#                resume give the weights of 3 epochs bit for bit; errors end the job with the
#                rank's message;
#   failure      a rank that leaves mid-step, or is killed, ends the whole job within seconds
#                with a message, instead of leaving the others waiting in an exchange.
# Without MPI (ctorch built without it, or no mpirun) it says so and exits 77, which CTest
# reports as Skipped.
# usage: run.sh WHAT path/to/mpi_equivalence path/to/train_cnn   ("none none" without MPI)
set -uo pipefail
what=$1 equivalence=$2 train_cnn=$3
skip() { echo "[SKIP] mpi_$what: $*"; exit 77; }
[[ $equivalence != none ]] ||
  skip "ctorch was built without MPI (apt-get install libopenmpi-dev openmpi-bin, then configure again)"
command -v mpirun >/dev/null || skip "mpirun is not installed (apt-get install openmpi-bin)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-mpi.XXXXXX") || { echo "run.sh: cannot make a temporary folder" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/../examples/checks.sh"

# Open MPI refuses to start as root unless told to, with these two variables (its documented
# override). CI runs as root; they are set here, for the tests, never in the user's environment.
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# ASan builds: Open MPI's own allocations still held at exit are not ctorch's leaks. The
# suppressions name its libraries, which needs whole stacks (its code has no frame pointers for
# the fast unwinder) and its plugins still loaded at exit, to name them.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export OMPI_MCA_mca_base_component_disable_dlclose=1
mpi=(timeout --kill-after=10 300 mpirun -np 2 --oversubscribe)

case $what in
equivalence)
  out=$("${mpi[@]}" "$equivalence" 2>&1)
  status=$?
  if ((status == 0)) && grep -q 'mpi_equivalence: PASS' <<<"$out"; then ok; else
    bad "equivalence: status $status (wanted 0), output (last 20 lines):"
    tail -n 20 <<<"$out"
  fi
  grep -h 'max relative error' <<<"$out" || true
  ;;

train_cnn)
  mkdir "$tmp/empty"
  run=(env "CTORCH_DATA=$tmp/empty" "${mpi[@]}" "$train_cnn" --distributed --sync-bn --limit-train 1024
       --limit-test 500 --batch-size 32)
  out=$("${run[@]}" --epochs 2 --checkpoint "$tmp/ck.safetensors" --log "$tmp/log.csv" 2>&1)
  status=$?
  if ((status == 0)) && [[ $(grep -c '^epoch 2: train loss' <<<"$out") == 1 ]] &&
     grep -q '^distributed: 2 processes, .* SyncBatchNorm' <<<"$out" && [[ -s $tmp/ck.safetensors ]] &&
     [[ $(wc -l <"$tmp/log.csv") == 3 ]] && [[ -z $(find "$tmp" -maxdepth 1 -name '*.tmp*') ]]; then
    ok
  else
    bad "two epochs: status $status, one report per epoch, a checkpoint, a log of 3 lines, no temporary file:"
    tail -n 20 <<<"$out"
    ls -la "$tmp"
  fi
  check resume 0 'resumed from .* after epoch 2' "${run[@]}" --epochs 3 --resume "$tmp/ck.safetensors" \
    --save "$tmp/resumed.safetensors"
  check straight 0 'epoch 3: train loss' "${run[@]}" --epochs 3 --save "$tmp/straight.safetensors"
  if cmp -s "$tmp/resumed.safetensors" "$tmp/straight.safetensors"; then ok; else
    bad "2 epochs + resume + 1 epoch did not give the weights of 3 epochs bit for bit"
  fi
  check unwritable_log 2 'rank 0 of 2: opening the log: cannot open log file' "${run[@]}" --epochs 1 \
    --log "$tmp/no/such/dir/log.csv"
  check sync_bn_alone 2 '--sync-bn is for --distributed training' "$train_cnn" --sync-bn
  check missing_load 2 'train_cnn: rank [01] of 2: loading the model: .*none.safetensors' \
    "${run[@]}" --epochs 1 --load "$tmp/none.safetensors"
  ;;

failure)
  # A rank that exits in the middle of a step: the other waits in the gradients' exchange.
  start=$SECONDS
  check exits 3 'rank 1 leaves in the middle of step 2' "${mpi[@]}" "$equivalence" --exit-rank 1 --at-step 2
  ((SECONDS - start < 60)) && ok || bad "the job took $((SECONDS - start)) s to end after rank 1 left"

  # A rank killed mid-training (SIGKILL: no chance to say anything): mpirun reports it and ends
  # the job. Rank 1 is found among mpirun's children by its OMPI_COMM_WORLD_RANK.
  parent_of() { { read -r _ _ _ ppid _ <"/proc/$1/stat" && echo "$ppid"; } 2>/dev/null; } # (no ps in a bare system)
  mkdir "$tmp/empty"
  env "CTORCH_DATA=$tmp/empty" "${mpi[@]}" "$train_cnn" --distributed --epochs 100 --limit-train 1024 \
    >"$tmp/killed.txt" 2>&1 &
  job=$!
  victim=
  for _ in $(seq 600); do # 60 s at most for training to start
    if grep -q '^optimizer:' "$tmp/killed.txt" 2>/dev/null; then
      for stat in /proc/[0-9]*/stat; do # the job's grandchildren: timeout -> mpirun -> ranks
        pid=${stat#/proc/} pid=${pid%/stat}
        parent=$(parent_of "$pid")
        [[ -n $parent && $(parent_of "$parent") == "$job" ]] || continue
        { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$pid
      done
    fi
    [[ -n $victim ]] && break
    sleep 0.1
  done
  if [[ -z $victim ]]; then
    bad "could not find rank 1 of the training job"
    kill "$job" 2>/dev/null
    wait "$job"
  else
    start=$SECONDS
    kill -KILL "$victim"
    wait "$job"
    status=$?
    elapsed=$((SECONDS - start))
    if ((status != 0 && elapsed < 60)) &&
       grep -Eq 'exited on signal 9|killed|terminated' "$tmp/killed.txt"; then
      ok
      echo "killed rank 1 (pid $victim): the job ended in ${elapsed} s with status $status"
    else
      bad "after rank 1 was killed: status $status after ${elapsed} s:"
      tail -n 20 "$tmp/killed.txt"
    fi
  fi
  ;;

*) echo "run.sh: unknown test '$what'" >&2; exit 2 ;;
esac

echo "mpi_$what: $passes passed, $fails failed"
((fails == 0))

#!/usr/bin/env bash
# The trainer as a user meets it: bad flags and unreadable files give a message and exit 2;
# without a data set it announces the synthetic set on its first line and learns it.
# usage: train_cnn_cli.sh path/to/train_cnn
set -uo pipefail
bin=$1
# Without set -e a failed mktemp would leave tmp empty and every path below would point into /.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-cli.XXXXXX") || { echo "train_cnn_cli: cannot make a temporary folder" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0

check() { # name, expected status, regex the output must match, command...
  local name=$1 want=$2 regex=$3
  shift 3
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [[ $status -eq $want ]] && grep -Eq -- "$regex" <<<"$out"; then
    passes=$((passes + 1))
  else
    fails=$((fails + 1))
    printf 'FAIL %s: status %d (wanted %d), output:\n%s\n' "$name" "$status" "$want" "$out" | tail -n 20
  fi
}

check help 0 '^usage: train_cnn' "$bin" --help
check unknown_flag 2 'unrecognized option' "$bin" --no-such-flag
check bad_number 2 "invalid value 'x' for --epochs" "$bin" --epochs x
check bad_lr 2 "invalid value '-1' for --lr" "$bin" --lr -1
check bad_model 2 "--model must be ref or deep" "$bin" --model huge
check stray_argument 2 "unexpected argument 'extra'" "$bin" extra
check missing_load 2 "^train_cnn: loading the model: .*$tmp/none.safetensors" "$bin" --data "$tmp/nodata" --load "$tmp/none.safetensors" --eval-only
printf 'not a checkpoint' >"$tmp/garbage.safetensors"
check garbage_load 2 "^train_cnn: loading the model: .*$tmp/garbage.safetensors" "$bin" --data "$tmp/nodata" --load "$tmp/garbage.safetensors" --eval-only
check unwritable_log 2 "cannot open log file" "$bin" --data "$tmp/nodata" --epochs 1 --limit-train 64 --log "$tmp/no/such/dir/log.csv"

# Learning the synthetic shapes: one short epoch is enough for >= 90% on held-out images.
check synthetic_first_line 0 '^data: no data set found in .*synthetic shapes' \
  "$bin" --data "$tmp/nodata" --epochs 1 --limit-train 1920 --limit-test 500 --threads 2 --seed 1 \
  --log "$tmp/log.csv" --save "$tmp/model.safetensors"
# LC_ALL=C: awk reads and prints numbers in the locale's format (a decimal comma in de_DE)
acc=$(LC_ALL=C awk -F, 'NR == 2 {printf "%.2f", 100 * $6}' "$tmp/log.csv")
check synthetic_log_accuracy 0 '^(9[0-9]|100)\.' echo "$acc"
# The saved state_dict loads back and evaluates to the same accuracy.
check eval_only_reload 0 "test accuracy: $acc%" \
  "$bin" --data "$tmp/nodata" --limit-test 500 --seed 1 --load "$tmp/model.safetensors" --eval-only

# Resuming is exact: 2 epochs straight (2 threads) and 1 epoch + checkpoint + resume (1 thread)
# save byte-identical models (same shuffles, same weights: nothing depends on the thread count).
common=(--data "$tmp/nodata" --limit-train 640 --limit-test 100 --seed 3)
check straight 0 'saved the model' "$bin" "${common[@]}" --epochs 2 --threads 2 --save "$tmp/straight.st"
check first_half 0 'test accuracy' "$bin" "${common[@]}" --epochs 1 --threads 2 --checkpoint "$tmp/ck.st"
check resumed 0 'resumed from .* after epoch 1' "$bin" "${common[@]}" --epochs 2 --threads 1 --resume "$tmp/ck.st" \
  --save "$tmp/resumed.st"
check identical_weights 0 '' cmp "$tmp/straight.st" "$tmp/resumed.st"
printf 'garbage' >"$tmp/bad.ck"
check bad_resume 2 "^train_cnn: resuming: .*$tmp/bad.ck" "$bin" "${common[@]}" --epochs 2 --resume "$tmp/bad.ck"
# Only a regular file is read: /dev/zero used to be read until memory ran out. (timeout: so
# that a trainer that reads it anyway fails this check instead of filling the machine's memory)
check resume_not_a_file 2 "^train_cnn: resuming: optim_checkpoint_load: /dev/zero: expected a regular file" \
  timeout 20 "$bin" "${common[@]}" --epochs 2 --resume /dev/zero

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]

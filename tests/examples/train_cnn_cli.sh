#!/usr/bin/env bash
# The trainer as a user meets it: bad flags and unreadable files give a message and exit 2; a
# data set it was told to use (--data, or files in $CTORCH_DATA) loads or is an error (exit 2);
# without a data set it announces the synthetic set on its first line and learns it.
# usage: train_cnn_cli.sh path/to/train_cnn
set -uo pipefail
bin=$1
# Without set -e a failed mktemp would leave tmp empty and every path below would point into /.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-cli.XXXXXX") || { echo "train_cnn_cli: cannot make a temporary folder" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

# No data set, whatever this machine has installed: $CTORCH_DATA names an empty folder (as
# DEVELOPERS.md hides the data set), so the trainer falls back to the synthetic shapes.
mkdir "$tmp/empty"
syn=(env "CTORCH_DATA=$tmp/empty" "$bin")

check help 0 '^usage: train_cnn' "$bin" --help
check help_data 0 'folder with the IDX files, which must load' "$bin" --help
check unknown_flag 2 'unrecognized option' "$bin" --no-such-flag
check bad_number 2 "invalid value 'x' for --epochs" "$bin" --epochs x
check bad_lr 2 "invalid value '-1' for --lr" "$bin" --lr -1
check bad_model 2 "--model must be ref or deep" "$bin" --model huge
check stray_argument 2 "unexpected argument 'extra'" "$bin" extra
check missing_load 2 "^train_cnn: loading the model: .*$tmp/none.safetensors" "${syn[@]}" --load "$tmp/none.safetensors" --eval-only
printf 'not a checkpoint' >"$tmp/garbage.safetensors"
check garbage_load 2 "^train_cnn: loading the model: .*$tmp/garbage.safetensors" "${syn[@]}" --load "$tmp/garbage.safetensors" --eval-only
check unwritable_log 2 "cannot open log file" "${syn[@]}" --epochs 1 --limit-train 64 --log "$tmp/no/such/dir/log.csv"

# A data set asked for must load: --data with no data set, a corrupt one or a mismatched one,
# and $CTORCH_DATA naming broken files or no folder, used to print a note, train on the
# synthetic shapes and exit 0.
byte() { printf "$(printf '\\%03o' "$1")"; } # the byte of value $1 (printf's octal escape)
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
idx_images() { # file n h w: n black images
  { printf '\x00\x00\x08\x03'; be32 "$2"; be32 "$3"; be32 "$4"; head -c $(($2 * $3 * $4)) /dev/zero; } >"$1"
}
idx_labels() { # file n: labels 0 1 ... 9 0 1 ...
  { printf '\x00\x00\x08\x01'; be32 "$2"; for ((i = 0; i < $2; i++)); do byte $((i % 10)); done; } >"$1"
}
mkdir "$tmp/good" "$tmp/corrupt" "$tmp/mismatched" "$tmp/small"
for set in train t10k; do
  idx_images "$tmp/good/$set-images-idx3-ubyte" 20 28 28
  idx_labels "$tmp/good/$set-labels-idx1-ubyte" 20
  printf 'garbage' >"$tmp/corrupt/$set-images-idx3-ubyte"
  cp "$tmp/good/$set-labels-idx1-ubyte" "$tmp/corrupt/"
  idx_images "$tmp/mismatched/$set-images-idx3-ubyte" 20 28 28
  idx_labels "$tmp/mismatched/$set-labels-idx1-ubyte" 19
  idx_images "$tmp/small/$set-images-idx3-ubyte" 20 14 14
  idx_labels "$tmp/small/$set-labels-idx1-ubyte" 20
done
check data_loads 0 "^data: Fashion-MNIST from $tmp/good" "$bin" --data "$tmp/good" --epochs 1 --threads 1
check data_missing 2 "^train_cnn: loading data: .*$tmp/nodata/train-images-idx3-ubyte\(\.gz\) not found" \
  "$bin" --data "$tmp/nodata" --epochs 1
check data_empty 2 "^train_cnn: loading data: .*$tmp/empty/train-images-idx3-ubyte\(\.gz\) not found" \
  "$bin" --data "$tmp/empty" --epochs 1
check data_corrupt 2 "^train_cnn: loading data: .*$tmp/corrupt/train-images-idx3-ubyte: bad IDX magic" \
  "$bin" --data "$tmp/corrupt" --epochs 1
check data_mismatched 2 "^train_cnn: loading data: .*20 images in .* but 19 labels in" \
  "$bin" --data "$tmp/mismatched" --epochs 1
check data_wrong_size 2 "^train_cnn: loading data: .*expected 28x28 images.*got 14x14" \
  "$bin" --data "$tmp/small" --epochs 1
check env_corrupt 2 "^train_cnn: loading data: .*$tmp/corrupt/train-images-idx3-ubyte" \
  env "CTORCH_DATA=$tmp/corrupt" "$bin" --epochs 1
check env_loads 0 "^data: Fashion-MNIST from $tmp/good" env "CTORCH_DATA=$tmp/good" "$bin" --epochs 1 --threads 1
check env_not_a_folder 2 "^train_cnn: loading data: \\\$CTORCH_DATA is $tmp/nodata, which is not a folder" \
  env "CTORCH_DATA=$tmp/nodata" "$bin" --epochs 1
check data_beats_env 0 "^data: Fashion-MNIST from $tmp/good" \
  env "CTORCH_DATA=$tmp/corrupt" "$bin" --data "$tmp/good" --epochs 1 --threads 1

# The fallback is announced on the very first line.
check synthetic_said_first 0 '^data: no data set found in .*using the synthetic shapes data set instead$' \
  bash -c '"$@" | head -n 1' _ "${syn[@]}" --epochs 0 --limit-train 64 --limit-test 64
# Learning the synthetic shapes: one short epoch is enough for >= 90% on held-out images.
check synthetic_first_line 0 "^data: no data set found in $tmp/empty .*synthetic shapes" \
  "${syn[@]}" --epochs 1 --limit-train 1920 --limit-test 500 --threads 2 --seed 1 \
  --log "$tmp/log.csv" --save "$tmp/model.safetensors"
# LC_ALL=C: awk reads and prints numbers in the locale's format (a decimal comma in de_DE)
acc=$(LC_ALL=C awk -F, 'NR == 2 {printf "%.2f", 100 * $6}' "$tmp/log.csv")
check synthetic_log_accuracy 0 '^(9[0-9]|100)\.' echo "$acc"
# The saved state_dict loads back and evaluates to the same accuracy.
check eval_only_reload 0 "test accuracy: $acc%" \
  "${syn[@]}" --limit-test 500 --seed 1 --load "$tmp/model.safetensors" --eval-only

# Resuming is exact: 2 epochs straight (2 threads) and 1 epoch + checkpoint + resume (1 thread)
# save byte-identical models (same shuffles, same weights: nothing depends on the thread count).
common=(--limit-train 640 --limit-test 100 --seed 3)
check straight 0 'saved the model' "${syn[@]}" "${common[@]}" --epochs 2 --threads 2 --save "$tmp/straight.st"
check first_half 0 'test accuracy' "${syn[@]}" "${common[@]}" --epochs 1 --threads 2 --checkpoint "$tmp/ck.st"
check resumed 0 'resumed from .* after epoch 1' "${syn[@]}" "${common[@]}" --epochs 2 --threads 1 \
  --resume "$tmp/ck.st" --save "$tmp/resumed.st"
check identical_weights 0 '' cmp "$tmp/straight.st" "$tmp/resumed.st"
# The same with AdamW and a warm-up (LinearLR; a checkpoint restores a schedule's settings, as
# PyTorch's load_state_dict does, so the first half's schedule must not depend on --epochs).
adamw=(--optimizer adamw --warmup-epochs 2 --schedule none)
check adamw_straight 0 'optimizer: AdamW, lr 0.001, weight decay 0.01 \(decoupled\); schedule: 2 warm-up epochs' \
  "${syn[@]}" "${common[@]}" "${adamw[@]}" --epochs 3 --threads 2 --save "$tmp/adamw_straight.st"
check adamw_first_half 0 'test accuracy' "${syn[@]}" "${common[@]}" "${adamw[@]}" --epochs 1 --threads 2 \
  --checkpoint "$tmp/adamw.ck"
check adamw_resumed 0 'resumed from .* after epoch 1' "${syn[@]}" "${common[@]}" "${adamw[@]}" --epochs 3 \
  --threads 1 --resume "$tmp/adamw.ck" --save "$tmp/adamw_resumed.st"
check adamw_identical_weights 0 '' cmp "$tmp/adamw_straight.st" "$tmp/adamw_resumed.st"
# A checkpoint of one optimizer (or schedule) does not resume another.
check resume_other_optimizer 2 "the checkpoint's optimizer is AdamW, this one is SGD" \
  "${syn[@]}" "${common[@]}" --epochs 3 --resume "$tmp/adamw.ck"
check resume_other_optimizer_hint 2 "resume with the --optimizer, --schedule and --warmup-epochs of the run" \
  "${syn[@]}" "${common[@]}" --optimizer adam --epochs 3 --resume "$tmp/adamw.ck"
check resume_other_schedule 2 "scheduler is a LinearLR, this scheduler is a CosineAnnealingLR" \
  "${syn[@]}" "${common[@]}" --optimizer adamw --schedule cosine --epochs 3 --resume "$tmp/adamw.ck"
check bad_optimizer 2 "--optimizer must be sgd, adam or adamw \(got 'lbfgs'\)" "$bin" --optimizer lbfgs
check momentum_not_adam 2 "--momentum is for --optimizer sgd" "$bin" --optimizer adam --momentum 0.5
check warmup_too_long 2 "--warmup-epochs 3 leaves no epoch for --schedule cosine" "$bin" --epochs 3 \
  --warmup-epochs 3 --schedule cosine
check help_optimizer 0 'sgd \(default\) \| adam \| adamw' "$bin" --help
printf 'garbage' >"$tmp/bad.ck"
check bad_resume 2 "^train_cnn: resuming: .*$tmp/bad.ck" "${syn[@]}" "${common[@]}" --epochs 2 --resume "$tmp/bad.ck"
# Only a regular file is read: /dev/zero used to be read until memory ran out. (timeout: so
# that a trainer that reads it anyway fails this check instead of filling the machine's memory)
check resume_not_a_file 2 "^train_cnn: resuming: optim_checkpoint_load: /dev/zero: expected a regular file" \
  timeout 20 "${syn[@]}" "${common[@]}" --epochs 2 --resume /dev/zero
# --summary prints torchinfo's table (the counts are PyTorch's: tests/test_summary.c) and reads no data.
check summary_ref 0 '^Total params: 50,282$' env CTORCH_DATA=/nonexistent "$bin" --summary
check summary_row 0 '^├─Conv2d: 1-5 +\[64, 64, 14, 14\] +18,432$' "$bin" --summary
check summary_deep 0 '^├─Linear: 1-20 +\[8, 10\] +1,290$' "$bin" --summary --model deep --batch-size 8
check help_summary 0 "--summary +print the model's layers" "$bin" --help

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]

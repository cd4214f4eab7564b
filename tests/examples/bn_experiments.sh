#!/usr/bin/env bash
# The experiments program as CI runs it: each experiment with --quick on the synthetic data set
# (the tables must have their columns and plausible values, and what the math fixes exactly),
# the command line (help, refusals, --load of ctorch and PyTorch files), and the plots.
# usage: bn_experiments.sh path/to/bn_experiments SOURCE_DIR WHAT
#   WHAT: an experiment's name, cli, or plots (needs gnuplot: exit 77, skipped, without it)
set -uo pipefail
bin=$1 src=$2 what=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-xp.XXXXXX") || { echo "bn_experiments.sh: cannot make a temporary folder" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
mkdir "$tmp/empty"
syn=(env "CTORCH_DATA=$tmp/empty" "$bin")

# Runs an experiment with --quick into $tmp/NAME, then checks its CSV's header.
run() { # experiment, header, extra args...
  local name=$1 header=$2
  shift 2
  mkdir -p "$tmp/$name"
  check "$name runs" 0 "wrote $tmp/$name/$name.csv" "${syn[@]}" "$name" --quick --threads 2 --out "$tmp/$name" "$@"
  csv=$tmp/$name/$name.csv
  if [[ -f $csv && $(head -n 1 "$csv") == "$header" ]]; then ok; else bad "$name: header is '$(head -n 1 "$csv" 2>/dev/null)'"; fi
}

# awk over the CSV's rows (header skipped): the program prints "ok" or says what is wrong.
expect() { # description, awk program
  local verdict
  verdict=$(awk -F, "NR > 1 { $2 } END { if (!done) print \"ok\" }" "$csv")
  if [[ $verdict == ok ]]; then ok; else bad "$(basename "$csv"): $1: $verdict"; fi
}
# every row: each of the columns given is a fraction in [0, 1]
fractions() { expect "fractions in [0, 1]" "for (i = 1; i <= split(\"$1\", c, \" \"); i++) if (!(\$c[i] >= 0 && \$c[i] <= 1)) { print \"row \" NR \" column \" c[i] \" = \" \$c[i]; done = 1; exit }"; }

case $what in
train-vs-eval)
  run train-vs-eval batch_size,accuracy_batch_stats,accuracy_running_stats,loss_batch_stats,loss_running_stats
  fractions "2 3"
  expect "batch sizes 1,2,8,64,512" 'split("1 2 8 64 512", b, " "); if ($1 != b[NR - 1]) { print "row " NR ": " $1; done = 1; exit } rows++ } END { if (!done && rows != 5) { print rows " rows"; done = 1 }'
  # eval mode does not depend on the batch; a trained model is well above chance (10 classes)
  expect "running statistics the same at every batch size" 'if (NR == 2) r = $3; if ($3 - r > 0.002 || r - $3 > 0.002 || $3 < 0.5) { print "row " NR ": " $3 " against " r; done = 1; exit }'
  expect "batch statistics of 512 images work" 'if ($1 == 512 && $2 < 0.5) { print "accuracy " $2; done = 1; exit }'
  expect "losses positive" 'if (!($4 > 0 && $5 > 0)) { print "row " NR; done = 1; exit }'
  ;;
momentum)
  run momentum step,mean_momentum_0.01,mean_momentum_0.1,mean_momentum_0.5,mean_cumulative,var_momentum_0.01,var_momentum_0.1,var_momentum_0.5,var_cumulative
  expect "41 rows, steps 0 to 40" 'if ($1 != NR - 2) { print "row " NR ": step " $1; done = 1; exit } rows++ } END { if (!done && rows != 41) { print rows " rows"; done = 1 }'
  expect "distances >= 0" 'for (i = 2; i <= 9; i++) if (!($i >= 0)) { print "row " NR " column " i; done = 1; exit }'
  expect "the same start for every momentum" 'if ($1 == 0 && ($2 != $3 || $2 != $4 || $2 != $5 || $6 != $7 || $6 != $8 || $6 != $9)) { print "step 0: " $0; done = 1; exit }'
  expect "momentum 0.1: the distances shrink" 'if ($1 == 0) { m = $3; v = $7 } if ($1 == 40 && !($3 < m / 10 && $7 < v / 10)) { print "step 40: mean " $3 " (from " m "), var " $7 " (from " v ")"; done = 1; exit }'
  # 1024 images in batches of 64: after 16 steps, one epoch of equal batches, the cumulative
  # average of the batch means is the mean over the set, computed the other way (in double)
  expect "cumulative average exact after one epoch" 'if ($1 == 16 && !($5 < 1e-5)) { print "step 16: " $5; done = 1; exit }'
  ;;
no-tracking)
  run no-tracking batch_size,accuracy_tracked,accuracy_untracked,accuracy_untracked_shuffled,prediction_changes
  fractions "2 3 4 5"
  expect "batch sizes 1,2,8,64,512" 'split("1 2 8 64 512", b, " "); if ($1 != b[NR - 1]) { print "row " NR ": " $1; done = 1; exit } rows++ } END { if (!done && rows != 5) { print rows " rows"; done = 1 }'
  expect "batch size 1: nothing changes with the order" 'if ($1 == 1 && ($5 != 0 || $3 != $4)) { print $0; done = 1; exit }'
  expect "batch size 2: the order changes predictions" 'if ($1 == 2 && !($5 > 0)) { print $0; done = 1; exit }'
  # eval mode without running statistics is training mode's normalisation: the same numbers
  # as train-vs-eval's batch statistics, on the same model
  run train-vs-eval batch_size,accuracy_batch_stats,accuracy_running_stats,loss_batch_stats,loss_running_stats
  a=$(cut -d, -f3 "$tmp/no-tracking/no-tracking.csv" | tail -n +2) b=$(cut -d, -f2 "$tmp/train-vs-eval/train-vs-eval.csv" | tail -n +2)
  if [[ -n $a && $a == "$b" ]]; then ok; else bad "no-tracking's accuracies ($(echo $a)) are not train-vs-eval's batch statistics ($(echo $b))"; fi
  ;;
forgot-eval)
  run forgot-eval order,batch_size,accuracy_eval,accuracy_forgot,accuracy_eval_after
  fractions "3 4 5"
  expect "two orders, three batch sizes" 'k = $1 " " $2; if (k != (NR <= 4 ? "stored " : "by_class ") (NR % 3 == 2 ? 10 : NR % 3 == 0 ? 100 : 1000)) { print "row " NR ": " k; done = 1; exit } rows++ } END { if (!done && rows != 6) { print rows " rows"; done = 1 }'
  expect "eval() does not depend on order or batch" 'if (NR == 2) r = $3; if ($3 - r > 0.002 || r - $3 > 0.002) { print "row " NR; done = 1; exit }'
  expect "one class per batch of 10 hurts" 'if ($1 == "by_class" && $2 == 10 && !($4 < $3 - 0.05)) { print "forgot " $4 ", eval " $3; done = 1; exit }'
  ;;
precise)
  run precise batches,images,accuracy_precise,accuracy_ema,loss_precise,loss_ema
  fractions "3 4"
  expect "batches 1,2,5,10 of 64" 'split("1 2 5 10", b, " "); if ($1 != b[NR - 1] || $2 != 64 * $1) { print "row " NR ": " $1 "," $2; done = 1; exit } rows++ } END { if (!done && rows != 4) { print rows " rows"; done = 1 }'
  # the statistics of the final network, even from one batch, serve it at least as well as the
  # exponential average of a network still changing (here 16 steps of training: much better),
  # and give a trained model's accuracy (a wrong reset, e.g. running_var left at 1, would not)
  expect "precise statistics work" 'if ($3 < 0.5 || $3 < $4 - 0.02 || !($5 > 0)) { print "row " NR ": " $0; done = 1; exit }'
  ;;
freeze)
  run freeze step,accuracy_unfrozen,accuracy_freeze_stats,accuracy_freeze_all
  fractions "2 3 4"
  expect "steps 0, 2, ..., 20" 'if ($1 != 2 * (NR - 2)) { print "row " NR ": step " $1; done = 1; exit } rows++ } END { if (!done && rows != 11) { print rows " rows"; done = 1 }'
  expect "one start" 'if ($1 == 0 && ($2 != $3 || $2 != $4)) { print $0; done = 1; exit }'
  ;;
ghost)
  run ghost epoch,train_loss_plain,train_loss_ghost,accuracy_plain,accuracy_ghost
  fractions "4 5"
  expect "two epochs, finite losses" 'if ($1 != NR - 1 || !($2 > 0 && $3 > 0 && $2 < 100 && $3 < 100)) { print "row " NR; done = 1; exit } rows++ } END { if (!done && rows != 2) { print rows " rows"; done = 1 }'
  expect "ghost batches are not plain batches" 'if ($1 == 1 && $2 == $3) { print "same loss " $2; done = 1; exit }'
  ;;
cli)
  check help 0 'train-vs-eval .*momentum .*no-tracking .*forgot-eval .*precise .*freeze .*ghost' bash -c '"$1" --help | tr "\n" " "' _ "$bin"
  for e in train-vs-eval momentum no-tracking forgot-eval precise freeze ghost; do
    check "help $e" 0 "^usage: bn_experiments $e .*$e.csv:" bash -c '"$1" "$2" --help | tr "\n" " "' _ "$bin" "$e"
  done
  check no_experiment 2 '^usage: bn_experiments EXPERIMENT' "$bin"
  check unknown 2 "unknown experiment 'nope'" "$bin" nope
  check not_taken 2 'train-vs-eval does not take --steps' "$bin" train-vs-eval --steps 3
  check bad_list 2 "invalid value '1,,2' for --batch-sizes \(expected 1 to 16 whole numbers from 1 to 1048576, separated by commas\)" \
    "$bin" train-vs-eval --batch-sizes 1,,2
  check zero_size 2 "invalid value '0' for --batch-sizes" "$bin" train-vs-eval --batch-sizes 0
  check long_list 2 "invalid value '1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17' for --batches" "$bin" precise --batches 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17
  check bad_lr 2 "invalid value '0' for --lr \(expected a number > 0\)" "$bin" freeze --lr 0
  check bad_steps 2 "invalid value '1e3' for --steps \(expected a whole number from 1 to 1000000\)" "$bin" momentum --steps 1e3
  check stray 2 "unexpected argument 'extra'" "$bin" precise extra
  check missing_model 2 "loading the model: .*$tmp/none.safetensors" "${syn[@]}" precise --quick --load "$tmp/none.safetensors" --out "$tmp"
  touch "$tmp/file"
  check out_is_file 2 "--out $tmp/file: not a folder" "${syn[@]}" precise --quick --out "$tmp/file"
  check out_parent 2 "cannot make the folder" "${syn[@]}" precise --quick --out "$tmp/no/such"
  # refused before any training: the batch, and the last batch of an epoch (1024 = 1000 + 24)
  check ghost_too_big 2 '^bn_experiments: ghost: --ghost-batch-size 32 is larger than the batch \(expected at most --batch-size 16\)$' \
    "${syn[@]}" ghost --quick --batch-size 16 --out "$tmp"
  check ghost_last_batch 2 'ghost: --ghost-batch-size 64 is larger than the last batch of each epoch \(24 images: 1024 training images in batches of 1000\); expected at most 24' \
    "${syn[@]}" ghost --quick --batch-size 1000 --ghost-batch-size 64 --out "$tmp"
  # a state_dict exported from PyTorch (the parity fixture) and one saved by ctorch
  check load_pytorch 0 "model: the reference CNN, .*parity_reference_cnn.safetensors: test accuracy" \
    "${syn[@]}" train-vs-eval --quick --batch-sizes 64 --load "$src/tests/fixtures/parity_reference_cnn.safetensors" --out "$tmp"
  check save_ctorch 0 'saved the model' env "CTORCH_DATA=$tmp/empty" "$(dirname "$bin")/train_cnn" --epochs 1 \
    --limit-train 256 --limit-test 100 --save "$tmp/ctorch.safetensors"
  check load_ctorch 0 "model: the reference CNN, $tmp/ctorch.safetensors: test accuracy" \
    "${syn[@]}" precise --quick --batches 1 --load "$tmp/ctorch.safetensors" --out "$tmp"
  # without gnuplot: the table, the script and how to draw it; exit 0
  mkdir "$tmp/nognuplot"
  check no_gnuplot 0 "gnuplot is not installed \(apt-get install gnuplot-nox\).*cd $tmp/nognuplot && gnuplot precise.gp" \
    env PATH=/nonexistent "CTORCH_DATA=$tmp/empty" "$bin" precise --quick --batches 1 --out "$tmp/nognuplot"
  if [[ -f $tmp/nognuplot/precise.csv && -f $tmp/nognuplot/precise.gp && ! -e $tmp/nognuplot/precise.png ]]; then ok
  else bad "without gnuplot: expected precise.csv and precise.gp, no precise.png: $(ls "$tmp/nognuplot")"; fi
  ;;
plots)
  if ! command -v gnuplot >/dev/null; then
    echo "[SKIP] bn_experiments_plots: gnuplot is not installed (apt-get install gnuplot-nox)"
    exit 77
  fi
  run precise batches,images,accuracy_precise,accuracy_ema,loss_precise,loss_ema --batches 1,2
  png=$tmp/precise/precise.png
  if [[ $(head -c 8 "$png" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; then ok; else bad "precise.png is not a PNG"; fi
  if [[ -z $(find "$tmp/precise" -name '*.tmp*') ]]; then ok; else bad "temporary files left: $(ls "$tmp/precise")"; fi
  # the script draws it by hand too, as the program says
  rm -f "$png"
  check by_hand 0 '' bash -c 'cd "$1" && gnuplot precise.gp' _ "$tmp/precise"
  if [[ -s $png ]]; then ok; else bad "gnuplot precise.gp made no precise.png"; fi
  ;;
*) echo "bn_experiments.sh: unknown test '$what'" >&2; exit 2 ;;
esac

echo "bn_experiments $what: $passes checks passed, $fails failed"
[[ $fails -eq 0 ]]

#!/usr/bin/env bash
# Re-runs every experiment of docs/experiments.md with the commands it states, writing the CSV
# tables, gnuplot scripts and plots into docs/experiments/, runs PyTorch's side of experiment 1
# (its accuracies must agree with ctorch's to 0.1 point), and rewrites the doc's tables from the
# CSV files. About 6 minutes on 2 cores; needs the release build, Fashion-MNIST and, for
# PyTorch's table, python3-torch.
#   bash scripts/update_experiments_doc.sh           regenerate
#   bash scripts/update_experiments_doc.sh --check   only check that the doc's tables are the
#                                                    committed CSV files' (what CTest runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
doc=docs/experiments.md out=docs/experiments build=${BUILD:-build/release}

# A CSV as a Markdown table: accuracies and fractions in percent, the rest as written.
# rows: a comma-separated list of first-column values to keep (empty: all).
table() { # csv [rows]
  awk -F, -v rows="${2:-}" '
    BEGIN { n = split(rows, r, ","); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    NR == 1 { for (i = 1; i <= NF; i++) { pct[i] = $i ~ /^(accuracy|prediction_changes)/; printf "| %s ", $i }
              printf "|\n"; for (i = 1; i <= NF; i++) printf "|---"; printf "|\n"; next }
    n && !($1 in keep) { next }
    { for (i = 1; i <= NF; i++) printf "| %s ", pct[i] ? sprintf("%.2f%%", 100 * $i) : $i; printf "|\n" }' "$1"
}

# Experiment 1 side by side with PyTorch: accuracies in percent and their differences in points.
side_by_side() { # ctorch.csv pytorch.csv
  awk -F, 'FNR == 1 { next } NR == FNR { b[$1] = $2; r[$1] = $3; next }
    FNR == 2 { print "| batch size | batch statistics: ctorch | PyTorch | difference (points) | running statistics: ctorch | PyTorch | difference (points) |"
               print "|---|---|---|---|---|---|---|" }
    { printf "| %s | %.2f%% | %.2f%% | %+.2f | %.2f%% | %.2f%% | %+.2f |\n", $1, 100 * b[$1], 100 * $2, 100 * (b[$1] - $2),
             100 * r[$1], 100 * $3, 100 * (r[$1] - $3) }' "$1" "$2"
}

# The doc with every table between "<!-- table FILE [rows] -->" (or "<!-- side-by-side A B -->")
# and "<!-- end -->" rendered afresh from docs/experiments/.
render_doc() {
  local line skip=0
  while IFS= read -r line; do
    if ((skip)); then
      [[ $line == '<!-- end -->' ]] && { skip=0; printf '%s\n' "$line"; }
      continue
    fi
    printf '%s\n' "$line"
    if [[ $line =~ ^'<!-- table '([^ ]+)( rows=([^ ]+))?' -->'$ ]]; then
      table "$out/${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}"; skip=1
    elif [[ $line =~ ^'<!-- side-by-side '([^ ]+)' '([^ ]+)' -->'$ ]]; then
      side_by_side "$out/${BASH_REMATCH[1]}" "$out/${BASH_REMATCH[2]}"; skip=1
    fi
  done < "$doc"
}

if [[ ${1:-} == --check ]]; then
  if diff -u "$doc" <(render_doc); then echo "docs/experiments.md: every table is its CSV file's"; exit 0; fi
  echo "docs/experiments.md's tables differ from docs/experiments/*.csv (above): run scripts/update_experiments_doc.sh" >&2
  exit 1
fi

data=${CTORCH_DATA:-/usr/share/datasets/fashion-mnist}
if ! ls "$data"/t10k-images-idx3-ubyte* > /dev/null 2>&1; then
  echo "update_experiments_doc: Fashion-MNIST is not in $data (apt-get install dataset-fashion-mnist, or set CTORCH_DATA)" >&2
  exit 1
fi
root=$(pwd) build=$(cd "$build" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-xpdoc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The runs happen in a scratch folder, with the doc's relative paths (which the gnuplot scripts
# record); docs/ changes only once everything has run and PyTorch agrees.
cd "$tmp"
mkdir -p "$out" lr-0.08
model=reference_cnn.safetensors
run() { # log, command...: runs it, which must have used Fashion-MNIST
  local log=$1
  shift
  echo "+ $*"
  "$@" > "$log"
  grep -q '^data: Fashion-MNIST from' "$log" || { echo "update_experiments_doc: $1 did not use Fashion-MNIST:" >&2; head -n 3 "$log" >&2; exit 1; }
}
run train.log "$build/train_cnn" --epochs 2 --threads 2 --seed 0 --save "$model"
for e in train-vs-eval momentum no-tracking forgot-eval precise freeze; do
  run "$e.log" "$build/bn_experiments" "$e" --load "$model" --threads 2 --out "$out"
done
run ghost.log "$build/bn_experiments" ghost --threads 2 --out "$out"
run ghost-lr.log "$build/bn_experiments" ghost --lr 0.08 --threads 2 --out lr-0.08
cp lr-0.08/ghost.csv "$out/ghost-lr-0.08.csv"
echo "+ python3 scripts/bn_experiment_train_vs_eval.py --load $model --threads 2"
/usr/bin/python3 "$root/scripts/bn_experiment_train_vs_eval.py" --load "$model" --threads 2 --data "$data" \
  --out "$out/train-vs-eval-pytorch.csv"
tail -n 2 train.log
# PyTorch's accuracies against ctorch's: at most 0.1 point apart
awk -F, 'FNR == 1 { next } NR == FNR { b[$1] = $2; r[$1] = $3; next }
  { d1 = b[$1] - $2; d2 = r[$1] - $3; if (d1 < 0) d1 = -d1; if (d2 < 0) d2 = -d2
    if (d1 > 0.001 + 1e-9 || d2 > 0.001 + 1e-9) { print "batch size " $1 ": ctorch and PyTorch differ by more than 0.1 point"; bad = 1 } }
  END { exit bad }' "$out/train-vs-eval.csv" "$out/train-vs-eval-pytorch.csv"
cd "$root"
cp "$tmp/$out"/* "$out"/
render_doc > "$tmp/doc.md"
mv "$tmp/doc.md" "$doc"
echo "updated $doc and $out/"

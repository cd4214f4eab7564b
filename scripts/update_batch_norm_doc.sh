#!/usr/bin/env bash
# Regenerates what docs/batch_norm.md quotes of examples/batch_norm_explained.c: its output (the
# block between the doc's "batch_norm_explained output" markers) and its pictures (docs/images/,
# DOT and, with Graphviz installed, PNG). Run it after changing the program, the kernels it prints,
# or the graph pictures; the test batch_norm_explained fails until the doc matches again.
# usage: bash scripts/update_batch_norm_doc.sh [build-dir]   (default build/release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(pwd)/${1:-build/release}/batch_norm_explained
[[ -x $bin ]] || { echo "update_batch_norm_doc: $bin not found: build it first" >&2; exit 2; }
command -v dot >/dev/null || { echo "update_batch_norm_doc: Graphviz's dot is needed for the pictures: apt-get install graphviz" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-doc.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The doc's command, run where its relative folder is fresh.
(cd "$work" && "$bin" --out bn_graphs) >"$work/out.txt"
cp "$work"/bn_graphs/*.dot "$work"/bn_graphs/*.png docs/images/
awk -v out="$work/out.txt" '
  /<!-- batch_norm_explained output: begin -->/ {
    print; print "```text"; while ((getline line < out) > 0) print line; print "```"; skip = 1; next
  }
  /<!-- batch_norm_explained output: end -->/ { skip = 0 }
  !skip' docs/batch_norm.md >"$work/doc.md"
cp "$work/doc.md" docs/batch_norm.md
echo "update_batch_norm_doc: docs/batch_norm.md and docs/images/ regenerated with $(dot -V 2>&1)"

#!/usr/bin/env bash
# The guided BatchNorm program as a learner runs it, and the doc that quotes it:
#   - it exits 0, its three gradients agree (twice: training and eval), dx vanishes for a
#     uniform upstream gradient, and gradcheck passes the right backward and reports the broken one;
#   - it writes the four graph pictures, and renders them when Graphviz is installed (otherwise it
#     says how); the DOT files are the ones docs/images holds, byte for byte (the PNGs there are
#     renderings of them; their pixels depend on the fonts a machine has, so they are not compared);
#   - docs/batch_norm.md quotes its whole output: every line matches this run (six-decimal numbers
#     to within 1e-5 + 1e-6 |x|, the room float rounding on another CPU may take; measured
#     differences, printed as 1.2e-07, to within 1e-6; the "picture:" lines, which depend on
#     Graphviz being installed, are left out);
#   - each row of the doc's formula-to-code map cites lines that hold the code it quotes.
# usage: batch_norm_explained.sh path/to/batch_norm_explained path/to/source
set -uo pipefail
export LC_ALL=C # awk reads numbers with a decimal point
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") src=$2 # absolute: it runs from another folder
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-bne.XXXXXX") || { echo "batch_norm_explained: cannot make a temporary folder" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
pass() { passes=$((passes + 1)); }
fail() { fails=$((fails + 1)); printf 'FAIL %s\n' "$*"; }

# Run the doc's command in a fresh folder, so that the paths it prints are the doc's.
pictures=$tmp/bn_graphs
(cd "$tmp" && "$bin" --out bn_graphs) >"$tmp/out.txt" 2>"$tmp/err.txt"
status=$?
out="$tmp/out.txt"
if [[ $status -eq 0 ]]; then pass; else fail "exit status $status"; cat "$tmp/err.txt"; tail -n 30 "$out"; fi

expect() { # name, count, fixed string
  local n
  n=$(grep -cF -- "$3" "$out")
  if [[ $n -eq $2 ]]; then pass; else fail "$1: \"$3\" appears $n times (wanted $2)"; fi
}
expect three_ways_agree 2 "the three agree to 1e-05: yes"
expect uniform_dx_vanishes 1 "ctorch's dx: largest |dx| = 0.0e+00"
expect gradcheck_passes_the_right_backward 1 "gradcheck: passed (16 elements)"
expect gradcheck_reports_the_broken_backward 1 "status invalid state: the broken backward is reported"
expect broken_element_named 1 "gradcheck: input 'x' element ["

# The pictures: DOT always, PNG when Graphviz is there.
doc="$src/docs/batch_norm.md"
for name in bn_fused bn_composite bn_composite_eval cnn_train_step; do
  if cmp -s "$pictures/$name.dot" "$src/docs/images/$name.dot"; then pass
  else fail "docs/images/$name.dot is not what the program writes (bash scripts/update_batch_norm_doc.sh)"; fi
  if command -v dot >/dev/null; then
    if [[ $(head -c 4 "$pictures/$name.png" | od -An -c | tr -d ' ') == '211PNG' ]]; then pass
    else fail "$name.png was not rendered"; fi
  else
    expect "how_to_render_$name" 1 "apt-get install graphviz, then dot -Tpng bn_graphs/$name.dot"
  fi
done

# The doc's copy of the output, between its markers, without the code fence.
sed -n '/<!-- batch_norm_explained output: begin -->/,/<!-- batch_norm_explained output: end -->/p' "$doc" |
  grep -v -e '^<!--' -e '^```' | grep -v 'picture:' >"$tmp/doc.txt"
grep -v 'picture:' "$out" >"$tmp/run.txt"
if [[ ! -s $tmp/doc.txt ]]; then
  fail "docs/batch_norm.md has no output block between its markers"
elif awk '
    function num(s) { return s ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[-+]?[0-9]+)?$/ }
    function abs(v) { return v < 0 ? -v : v }
    function close_enough(x, y) {
      if (!num(x) || !num(y)) return 0
      if (x ~ /e/ && y ~ /e/) return abs(x - y) <= 1e-6
      return abs(x - y) <= 1e-5 + 1e-6 * abs(x)
    }
    NR == FNR { doc[FNR] = $0; nd = FNR; next }
    { run[FNR] = $0; nr = FNR }
    END {
      if (nd != nr) { printf "the doc quotes %d lines, the program printed %d\n", nd, nr; exit 1 }
      bad = 0
      for (i = 1; i <= nd; i++) {
        if (doc[i] == run[i]) continue
        n = split(doc[i], a, /[ \t,\[\]()=:;]+/); m = split(run[i], b, /[ \t,\[\]()=:;]+/)
        ok = n == m
        for (k = 1; ok && k <= n; k++)
          if (a[k] != b[k]) ok = close_enough(a[k], b[k])
        if (!ok) { printf "line %d differs\n  doc: %s\n  run: %s\n", i, doc[i], run[i]; bad++ }
      }
      exit bad > 0
    }' "$tmp/doc.txt" "$tmp/run.txt"; then
  pass
else
  fail "docs/batch_norm.md's output block does not match a fresh run"
fi

# The map: rows like  | formula | `function` | [file.c:12-15](../src/nn/file.c#L12-L15) | `code` |
rows=0
while IFS= read -r row; do
  rows=$((rows + 1))
  path=$(sed -E 's/.*\]\(\.\.\/([^#)]+)#L([0-9]+)-L([0-9]+)\).*/\1/' <<<"$row")
  from=$(sed -E 's/.*\]\(\.\.\/([^#)]+)#L([0-9]+)-L([0-9]+)\).*/\2/' <<<"$row")
  to=$(sed -E 's/.*\]\(\.\.\/([^#)]+)#L([0-9]+)-L([0-9]+)\).*/\3/' <<<"$row")
  code=$(sed -E 's/.*\| `([^`]+)` \|[[:space:]]*$/\1/' <<<"$row")
  if [[ -f $src/$path ]] && sed -n "${from},${to}p" "$src/$path" | grep -qF -- "$code"; then pass
  else fail "map row cites $path:$from-$to, which does not hold \`$code\`"; fi
done < <(grep -E '^\| .*\]\(\.\./src/[^)]+#L[0-9]+-L[0-9]+\) \| `' "$doc")
if [[ $rows -ge 10 ]]; then pass; else fail "the formula-to-code map has $rows rows (wanted at least 10)"; fi

echo "batch_norm_explained: $passes checks passed, $fails failed"
[[ $fails -eq 0 ]]

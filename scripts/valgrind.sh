#!/usr/bin/env bash
# Runs every test program of a build under valgrind's leak checker (slow: minutes, so not part
# of CI, which runs the same suite under ASan+LSan). Criterion forks a process per test, so
# children are traced too. OpenMP's worker-thread stacks show as "possibly lost" by design of
# libgomp; only definite and indirect leaks count.
# usage: bash scripts/valgrind.sh [build-dir]   (default build/debug)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build/debug}
if [[ ! -d $build ]]; then
  cmake --preset debug >/dev/null
  cmake --build --preset debug -j "$(nproc)"
  build=build/debug
fi
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 2; }
fails=0 passes=0
for t in "$build"/test_*; do
  [[ -x $t && -f $t ]] || continue
  log=$(mktemp)
  if valgrind --quiet --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite,indirect \
       --show-leak-kinds=definite,indirect --error-exitcode=99 "$t" --jobs 1 >"$log" 2>&1; then
    passes=$((passes + 1))
    echo "ok   $(basename "$t")"
  else
    fails=$((fails + 1))
    echo "FAIL $(basename "$t")"
    tail -n 40 "$log"
  fi
  rm -f "$log"
done
echo "valgrind: $passes passed, $fails failed"
[[ $fails -eq 0 ]]

#!/usr/bin/env bash
# Runs every test program of a build under valgrind's leak checker (slow: minutes, so not part
# of CI, which runs the same suite under ASan+LSan). Criterion forks a process per test, so
# children are traced too, and a program fails when any of its processes has a valgrind error
# (invalid reads and writes, uses of uninitialised values, bad frees, definite and indirect
# leaks). OpenMP's worker-thread stacks show as "possibly lost" by design of libgomp and do not
# count.
#
# valgrind stops at the first instruction it does not know, and the release and debug presets
# compile for this machine's CPU (-march=native: AVX-512 where the CPU has it). So by default
# the script configures and builds the `valgrind` preset (build/valgrind: -g, CTORCH_NATIVE=OFF,
# no sanitizers) and runs that; a build folder given instead must be portable and unsanitized.
#
# usage: bash scripts/valgrind.sh [build-dir]
# Environment: VALGRIND_TIMEOUT, seconds allowed per test program (default 1800).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not found: apt-get install valgrind" >&2; exit 2; }

if [[ $# -eq 0 ]]; then
  cmake --preset valgrind >/dev/null
  cmake --build --preset valgrind -j "$(nproc)"
  build=build/valgrind
else
  build=$1
  cache=$build/CMakeCache.txt
  [[ -f $cache ]] || { echo "valgrind.sh: $build is not a CMake build folder (no CMakeCache.txt)" >&2; exit 2; }
  if grep -q '^CTORCH_NATIVE:BOOL=ON' "$cache"; then
    echo "valgrind.sh: $build is built with -march=native (CTORCH_NATIVE=ON), which valgrind may not" \
         "run (it stops at AVX-512 instructions); run without an argument for the valgrind preset" >&2
    exit 2
  fi
  if grep -q '^CTORCH_SANITIZE:BOOL=ON' "$cache"; then
    echo "valgrind.sh: $build is built with sanitizers (CTORCH_SANITIZE=ON), which do not run under valgrind" >&2
    exit 2
  fi
fi

# As CTest does: Criterion variables from the caller's shell must not change verdicts.
unset CRITERION_ALWAYS_SUCCEED CRITERION_TEST_PATTERN CRITERION_ENABLE_TAP
fails=0 passes=0 skips=0
work=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-valgrind.XXXXXX") || { echo "valgrind.sh: mktemp failed" >&2; exit 2; }
trap 'rm -rf "$work"' EXIT
for t in "$build"/test_*; do
  [[ -x $t && -f $t ]] || continue
  rm -f "$work"/*
  status=0
  # One valgrind log per process: Criterion runs each test in a child whose exit status (and so
  # --error-exitcode) it does not pass on, so errors are counted from every log's summary.
  # Programs a test runs that are not ours (Graphviz's dot, through sh) are not traced: their
  # leaks are theirs.
  timeout "${VALGRIND_TIMEOUT:-1800}" valgrind --trace-children=yes --trace-children-skip='*/sh,*/dot' \
    --log-file="$work/vg.%p" --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --error-exitcode=99 \
    "$t" --jobs 1 --verbose >"$work/out" 2>&1 || status=$?
  errors=$(cat "$work"/vg.* 2>/dev/null | grep -c 'ERROR SUMMARY: [1-9]' || true)
  if [[ $status -ne 0 || $errors -ne 0 ]]; then
    fails=$((fails + 1))
    echo "FAIL $(basename "$t") (exit $status$([[ $status -eq 124 ]] && echo ': timed out'); $errors processes with valgrind errors)"
    tail -n 20 "$work/out"
    # each error report: the headline and its stack, up to the blank line that ends it
    cat "$work"/vg.* 2>/dev/null | sed 's/^==[0-9]*== \{0,1\}//' |
      awk '/^(Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Process terminating|[0-9,]+ (\(.*\) )?bytes in)/ {on = 1}
           on {print} /^$/ {on = 0}' | head -n 80
  elif grep -q 'Synthesis: Tested: 0 ' "$work/out"; then
    skips=$((skips + 1))
    echo "skip $(basename "$t") (none of its tests ran: $(grep -m1 '^\[SKIP\]' "$work/out" | sed 's/^\[SKIP\] //'))"
  else
    passes=$((passes + 1))
    echo "ok   $(basename "$t")"
  fi
done
echo "valgrind: $passes passed, $skips skipped, $fails failed"
[[ $fails -eq 0 && $((passes + skips)) -gt 0 ]]

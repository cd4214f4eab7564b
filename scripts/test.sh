#!/usr/bin/env bash
# Sets up the machine (packages, release build; no data set) and runs every test of the release
# build through CTest, then lists each skipped test with its reason (a test that needs an
# optional resource, such as the Fashion-MNIST data set, is skipped where it is missing).
# Exits non-zero if any test fails. Arguments go to ctest (e.g. -R batch_norm, -j 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --no-dataset
status=0
ctest --preset release "$@" || status=$?

# CTest names a skipped program but not why; Criterion's --verbose report says it per test.
log=build/release/Testing/Temporary/LastTest.log
if grep -q '^\[SKIP\]' "$log" 2>/dev/null; then
  echo
  echo "Skipped tests and why:"
  grep '^\[SKIP\]' "$log" | sed 's/^\[SKIP\] /  /'
fi
exit "$status"

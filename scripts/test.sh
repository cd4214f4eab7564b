#!/usr/bin/env bash
# Sets up the machine (packages, release build; no dataset) and runs every test of the release
# build through CTest. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --no-dataset
ctest --preset release

#!/usr/bin/env bash
# Sets up the machine (packages, Fashion-MNIST, release build), then runs the main demo.
# Usage: bash scripts/demo.sh [arguments for the demo program]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# The demo is the CNN trainer once examples/train_cnn.c exists; until then, the autograd example.
if [[ -x build/release/train_cnn ]]; then
  demo=build/release/train_cnn
else
  demo=build/release/autograd_basics
fi
echo "demo: $demo $*"
[[ -x $demo ]] || { echo "demo: $demo was not built" >&2; exit 1; }
exec "$demo" "$@"

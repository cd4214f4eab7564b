#!/usr/bin/env bash
# Sets up the machine (packages, Fashion-MNIST, release build), then trains the demo CNN:
# build/release/train_cnn, two epochs of the reference network, ending with its test accuracy.
# Usage: bash scripts/demo.sh [arguments for train_cnn, e.g. --epochs 5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
exec build/release/train_cnn "$@"

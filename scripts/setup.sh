#!/usr/bin/env bash
# Installs the Debian packages ctorch needs (only those missing) and builds the release preset.
# Usage: bash scripts/setup.sh [--no-dataset] [--fuzz-tools]
#   --no-dataset  skip dataset-fashion-mnist (the demo's data; the tests do not need it)
#   --fuzz-tools  also install clang with libFuzzer and its OpenMP runtime (scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# graphviz renders the autograd-graph pictures (examples/batch_norm_explained, test_dot_render),
# gnuplot-nox the plots of bn_experiments; without them the programs write DOT files and
# gnuplot scripts, and the tests of the pictures are skipped. Open MPI (libopenmpi-dev,
# openmpi-bin) builds data-parallel training (train_cnn --distributed) and runs its tests;
# without it they are skipped.
packages=(build-essential cmake pkg-config libopenblas-dev libstb-dev libcriterion-dev
          libcjson-dev zlib1g-dev graphviz gnuplot-nox libopenmpi-dev openmpi-bin)
dataset=1
for arg in "$@"; do
  case $arg in
    --no-dataset) dataset=0 ;;
    --fuzz-tools) packages+=(clang libclang-rt-dev libomp-dev) ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done
if ((dataset)); then
  packages+=(dataset-fashion-mnist)
fi

missing=()
for package in "${packages[@]}"; do
  if [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null) != "install ok installed" ]]; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  if ((EUID == 0)); then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
    exit 1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A build folder configured for another source folder (the checkout was moved or copied with its
# build/) makes CMake stop with "CMakeCache.txt directory ... is different": configure it afresh.
fresh=()
cache=build/release/CMakeCache.txt
if [[ -f $cache ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$(pwd -P)" "$cache"; then
  echo "setup: build/release was configured for another source folder: configuring it afresh"
  fresh=(--fresh)
fi
cmake --preset release "${fresh[@]}"
cmake --build --preset release -j "$(nproc)"

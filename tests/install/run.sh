#!/usr/bin/env bash
# Installs an already-built ctorch tree into a temporary prefix and builds and runs an outside
# program against it, through find_package(ctorch) (shared and static) and through pkg-config.
# Usage: tests/install/run.sh BUILD_DIR [C_COMPILER]     (CTest runs it as install_consumer)
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR [C_COMPILER]}" && pwd)
cc=${2:-cc}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ctorch-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
test -f "$prefix/include/ctorch/ctorch.h"
libdir=$(dirname "$(find "$prefix" -name 'libctorch.so' -print -quit)")

echo "== find_package(ctorch)"
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build"
"$work/build/consumer_ctorch"
"$work/build/consumer_ctorch_static"

echo "== pkg-config ctorch"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
flags=$(pkg-config --cflags --libs ctorch)
echo "pkg-config --cflags --libs ctorch: $flags"
# pkg-config's flags come last so that its -Wno-override-init follows -Wextra.
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$here/main.c" "$here/override_init.c" \
      -o "$work/consumer_pkgconfig" $flags
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/consumer_pkgconfig"

echo "install_consumer: ok"

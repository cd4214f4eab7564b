#!/usr/bin/env bash
# Installs an already-built ctorch tree into a temporary prefix and checks what a user gets there:
#  - the headers are the public API only: exactly src/ctorch.h and the headers it reaches (the
#    definition in cmake/ctorchLayers.cmake, and what the preprocessor reaches from
#    <ctorch/ctorch.h>); no private header (autograd/functions.h, a simd.h, ...); each compiles on
#    its own under -Wall -Wextra -Wpedantic -Werror and includes only installed headers;
#  - an outside program built through find_package(ctorch) (shared and static, in its build tree
#    and installed by its own project) and through pkg-config runs with LD_LIBRARY_PATH unset: it
#    carries an RPATH/RUNPATH to the prefix's libdir and loads libctorch.so from there.
# Usage: tests/install/run.sh BUILD_DIR [C_COMPILER]     (CTest runs it as install_consumer)
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR [C_COMPILER]}" && pwd)
cc=${2:-cc}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
# A physical path, so that the paths compared below (RUNPATH, ldd, the compiler's) agree.
work=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/ctorch-install.XXXXXX")" && pwd -P)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

fail() {
  echo "install_consumer: FAIL: $*" >&2
  exit 1
}

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
inc=$prefix/include/ctorch
test -f "$inc/ctorch.h" || fail "no include/ctorch/ctorch.h in the prefix"
lib=$(find "$prefix" -name 'libctorch.so' -print -quit)
[[ -n $lib ]] || fail "no libctorch.so in the prefix"
libdir=$(dirname "$lib")

echo "== installed headers: the public API only"
installed=$(cd "$inc" && find . -name '*.h' | sed 's|^\./||' | LC_ALL=C sort)
public=$(cmake -DCTORCH_SOURCE_DIR="$source_dir" -P "$here/public_headers.cmake" | LC_ALL=C sort)
if [[ $installed != "$public" ]]; then
  diff <(echo "$public") <(echo "$installed") | sed 's/^/  /' >&2 || true
  fail "the installed headers (>) differ from the public ones, src/ctorch.h and what it reaches (<)"
fi
echo "$(echo "$installed" | wc -l) headers: $(echo "$installed" | tr '\n' ' ')"
[[ ! -e $inc/autograd/functions.h ]] || fail "private header autograd/functions.h is installed"
simd=$(find "$prefix" -name 'simd.h')
[[ -z $simd ]] || fail "private header installed: $simd"
private=$(cd "$source_dir/src" && find . -name '*.h' | sed 's|^\./||' | LC_ALL=C sort |
          LC_ALL=C comm -23 - <(echo "$public"))
for header in $private; do
  [[ ! -e $inc/$header ]] || fail "private header $header is installed"
done
echo "private, not installed: $(echo "$private" | tr '\n' ' ')"

# One translation unit per installed header, plus one including ctorch.h, compiled with only the
# prefix's include directory: each header stands alone, and the preprocessor's list of what each
# includes (-M) holds installed ctorch headers only.
mkdir "$work/headers"
n=0
for header in $installed; do
  n=$((n + 1))
  printf '#include <ctorch/%s>\ntypedef int ctorch_header_check;\n' "$header" >"$work/headers/h$n.c"
done
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$prefix/include" \
      "$work"/headers/h*.c || fail "an installed header does not compile on its own (above)"
outside=$("$cc" -std=c11 -M -I"$prefix/include" "$work"/headers/h*.c |
          sed 's/\\$//' | tr -s ' \t' '\n' | grep '\.h$' | LC_ALL=C sort -u | xargs realpath -m |
          grep -v "^$inc/" | grep ctorch || true)
[[ -z $outside ]] || fail "installed headers include headers from outside the prefix: $outside"
printf '#include <ctorch/ctorch.h>\n' >"$work/headers/all.c"
from_umbrella=$("$cc" -std=c11 -MM -I"$prefix/include" "$work/headers/all.c" |
                sed 's/\\$//' | tr -s ' \t' '\n' | grep '\.h$' |
                xargs realpath -m --relative-to="$inc" | LC_ALL=C sort -u)
if [[ $from_umbrella != "$installed" ]]; then
  diff <(echo "$from_umbrella") <(echo "$installed") | sed 's/^/  /' >&2 || true
  fail "the installed headers (>) are not exactly what <ctorch/ctorch.h> includes (<)"
fi
echo "each compiles alone (-Wall -Wextra -Wpedantic -Werror) and includes only installed headers"

# A program linked with libctorch.so must carry the prefix's libdir in its RUNPATH (or RPATH),
# load libctorch from there, and run, all with LD_LIBRARY_PATH unset.
runs_without_ld_library_path() {
  local bin=$1 dynamic paths loaded
  dynamic=$(readelf -d "$bin" | grep -E '\((RUNPATH|RPATH)\)' | sed 's/^ *//' || true)
  echo "readelf -d ${bin#"$work"/}: ${dynamic:-no RUNPATH or RPATH}"
  paths=$(sed -n 's/.*\[\(.*\)\].*/\1/p' <<<"$dynamic" | tr '\n' ':')
  [[ ":$paths:" == *":$libdir:"* ]] || fail "$bin: no RUNPATH/RPATH to $libdir"
  loaded=$(env -u LD_LIBRARY_PATH ldd "$bin" | awk '$1 ~ /^libctorch\.so/ { print $3 }')
  [[ $loaded == "$libdir"/* ]] || fail "$bin: libctorch is loaded from '${loaded:-nowhere}', not $libdir"
  env -u LD_LIBRARY_PATH "$bin" || fail "$bin failed without LD_LIBRARY_PATH"
}

echo "== find_package(ctorch)"
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" || { cat "$work/build.log"; exit 1; }
runs_without_ld_library_path "$work/build/consumer_ctorch"
echo "build/consumer_ctorch_static (static, no libctorch.so):"
env -u LD_LIBRARY_PATH "$work/build/consumer_ctorch_static"
# Installing a program drops CMake's build-tree RPATH; the one ctorch::ctorch hands out stays.
cmake --install "$work/build" --prefix "$work/app" >"$work/app.log" || { cat "$work/app.log"; exit 1; }
runs_without_ld_library_path "$work/app/bin/consumer_ctorch"
echo "app/bin/consumer_ctorch_static (static, no libctorch.so):"
env -u LD_LIBRARY_PATH "$work/app/bin/consumer_ctorch_static"

echo "== pkg-config ctorch"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
flags=$(pkg-config --cflags --libs ctorch)
echo "pkg-config --cflags --libs ctorch: $flags"
# pkg-config's flags come last so that its -Wno-override-init follows -Wextra.
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$here/main.c" "$here/override_init.c" \
      -o "$work/consumer_pkgconfig" $flags
runs_without_ld_library_path "$work/consumer_pkgconfig"

echo "== the README's programs"
# Every ```c block of the README with a main() compiles against the installed package under
# -Werror and runs; the training program among them is main.c (after its header comment).
mkdir "$work/readme"
awk -v dir="$work/readme" '/^```c$/ { n++; on = 1; next } /^```$/ { on = 0 } on { print > (dir "/block" n ".c") }' \
    "$source_dir/README.md"
programs=0
for block in "$work"/readme/block*.c; do
  grep -q '^int main(' "$block" || continue
  programs=$((programs + 1))
  # shellcheck disable=SC2086
  "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$block" -o "${block%.c}" $flags ||
    fail "README.md's program $(basename "$block") does not compile (above)"
  env -u LD_LIBRARY_PATH "${block%.c}" >"${block%.c}.out" || fail "README.md's program $(basename "$block") failed"
done
[[ $programs -ge 2 ]] || fail "expected at least 2 programs in README.md, found $programs"
grep -l 'conv_bn_relu' "$work"/readme/block*.c | head -n 1 | xargs -r cat >"$work/readme/training.c"
diff <(sed '1,/\*\//d' "$here/main.c") "$work/readme/training.c" >&2 ||
  fail "README.md's training program differs from tests/install/main.c (<)"
grep -q '1306 parameters; eval output independent of the batch: yes; all 16 classified right: yes' \
    "$work/readme/$(basename "$(grep -l 'conv_bn_relu' "$work"/readme/block*.c | head -n 1)" .c).out" ||
  fail "the training program's last line is not the README's"
echo "$programs programs compile and run; the training program is main.c"

echo "install_consumer: ok"

#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer harnesses in fuzz/ (clang, -fsanitize=fuzzer,address,undefined)
# and runs each for a bounded time on a working copy of its seed corpus (fuzz/corpus/<name>/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS ...]
#   e.g. scripts/fuzz.sh 60                       # all harnesses, 60 s each
#        scripts/fuzz.sh 300 fuzz_safetensors     # one harness, 5 minutes
# Environment: CTORCH_FUZZ_BUILD (build directory, default build/fuzz-run), FUZZ_JOBS (parallel
# build jobs). Crash inputs are kept in $CTORCH_FUZZ_BUILD/artifacts/; reproduce one with
#   $CTORCH_FUZZ_BUILD/fuzz_safetensors path/to/crash-...
# Exit status: 0 when no harness found a crash, 1 otherwise, 2 when the build failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${CTORCH_FUZZ_BUILD:-$root/build/fuzz-run}
jobs=${FUZZ_JOBS:-$(nproc)}

mapfile -t all < <(cd "$root/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")

command -v clang > /dev/null || { echo "fuzz.sh: clang is required (apt-get install clang libclang-rt-dev libomp-dev)" >&2; exit 2; }

# UBSan findings abort (so they count as crashes), as ASan's do.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

echo "== building harnesses in $build"
mkdir -p "$build"
if ! cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCTORCH_BUILD_FUZZ=ON -DCTORCH_BUILD_TESTS=OFF -DCTORCH_BUILD_EXAMPLES=OFF -DCTORCH_BUILD_BENCH=OFF \
      -DCMAKE_C_FLAGS="-fno-sanitize-recover=undefined" > "$build/cmake.log" 2>&1 \
   || ! cmake --build "$build" -j "$jobs" --target "${harnesses[@]}" > "$build/build.log" 2>&1; then
    # Without the CMake option (or with a broken configure), build by hand against the sources.
    echo "   CMake build unavailable (see $build/cmake.log, build.log); compiling by hand"
    srcs=("$root"/src/*/*.c)
    flags=(-std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined,float-cast-overflow
           -fno-sanitize-recover=undefined -fopenmp -I"$root/src")
    for h in "${harnesses[@]}"; do
        clang "${flags[@]}" "$root/fuzz/$h.c" "${srcs[@]}" -o "$build/$h" \
              -lopenblas -lstb -lcjson -lz -lm || exit 2
    done
fi

mkdir -p "$build/artifacts"
status=0
summary=()
for h in "${harnesses[@]}"; do
    bin="$build/$h"
    [ -x "$bin" ] || { echo "fuzz.sh: $bin was not built" >&2; exit 2; }
    corpus="$build/corpus/$h"
    mkdir -p "$corpus"
    [ -d "$root/fuzz/corpus/$h" ] && cp -n "$root/fuzz/corpus/$h"/* "$corpus"/ 2> /dev/null || true
    dict=()
    [ -f "$root/fuzz/corpus/$h.dict" ] && dict=(-dict="$root/fuzz/corpus/$h.dict")
    echo "== $h: ${secs}s"
    log="$build/$h.log"
    set +e
    CTORCH_FUZZ_SEED_DIR="$corpus" "$bin" "$corpus" "${dict[@]}" -max_total_time="$secs" -max_len=65536 \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$build/artifacts/$h-" > "$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' || true)
    if [ $rc -ne 0 ]; then
        status=1
        summary+=("$h: CRASH (exit $rc) after ${execs:-?} executions; see $log and $build/artifacts/")
        grep -m5 -E 'ERROR|runtime error|SUMMARY' "$log" || true
    else
        summary+=("$h: ${execs:-?} executions in ${secs}s, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l) inputs, no crash")
    fi
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status

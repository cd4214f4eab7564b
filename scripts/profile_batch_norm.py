#!/usr/bin/env python3
"""Where BatchNorm2d's time goes, pass by pass: bench_batch_norm under `perf record`.

For each shape, runs `bench_batch_norm --ops OP` under perf's cpu-clock sampler (a fixed period,
so that samples count CPU time) and splits the op's time between the four kernels that touch the
tensors, with the bytes each one moves (B = one tensor's bytes; a write counts once):

    plane_moments     statistics of x                      reads x          B
    plane_normalise   y = a (x - mean) + beta              reads x, writes y  2B
    plane_grad_sums   sum(dy), sum(dy (x - mean))          reads x, dy      2B
    plane_dx          dx = a dy + b x + d                  reads x, dy, writes dx  3B

and prints a markdown table: each kernel's time per call and its rate in GB/s, beside the
same-size memcpy (2B per call) from the same process. A kernel near the copy's rate is at the
memory (or cache) bandwidth; one far below it is bound by its arithmetic or by the prefetchers.
`rest` is everything else in the op (per-channel sums, allocation, graph, OpenMP waits).

    scripts/profile_batch_norm.py --build build-bench [--threads 1] [--op train_fwdbwd] [--reps 1000]

Needs `perf` (Debian's linux-perf); the cpu-clock event works in VMs without hardware counters.
"""
import argparse
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile

SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14), (128, 64, 8, 8), (32, 64, 56, 56), (20, 100, 35, 45),
          (256, 16, 32, 32)]
# kernel symbol -> tensor-sized transfers per call
KERNELS = {"plane_moments": 1, "plane_normalise": 2, "plane_grad_sums": 2, "plane_dx": 3}
PERIOD_NS = 1_000_000  # one sample per ms of CPU time (faster sampling slows the copy itself)


def profile(bench, shape, threads, op, reps):
    """Per-call ms of each kernel and of the whole op, the copy's ms, and the tensor's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-c", str(PERIOD_NS), "-o", data, bench, "--threads",
               str(threads), "--reps", str(reps), "--shape", ",".join(map(str, shape)), "--ops", op]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows = {r["op"]: r for r in csv.DictReader(io.StringIO(
            "\n".join(l for l in run.stdout.splitlines() if not l.startswith("#"))))}
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-n", "--sort", "symbol"],
                             capture_output=True, text=True, check=True).stdout
    samples = {}
    for line in rep.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[.\]\s+(\S+)", line)
        if m:
            samples[m.group(2)] = samples.get(m.group(2), 0) + int(m.group(1))
    calls = reps + reps // 10 + 2  # timed runs + warm-up runs (bench_util.h)
    per_call = {k: samples.get(k, 0) * PERIOD_NS * 1e-6 / calls for k in KERNELS}
    nbytes = 4 * shape[0] * shape[1] * shape[2] * shape[3]
    return per_call, float(rows[op]["median_ms"]), float(rows["copy"]["median_ms"]), nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/bench", help="directory holding bench_batch_norm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--op", default="train_fwdbwd", help="train_fwd, eval_fwd, train_fwdbwd, train_fwdbwd_relu")
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args()
    bench = os.path.join(args.build, "bench_batch_norm")
    if not os.access(bench, os.X_OK):
        sys.exit(f"profile_batch_norm: {bench} not found (build the bench preset first)")
    if not shutil.which("perf"):
        sys.exit("profile_batch_norm: perf not found (apt-get install linux-perf)")
    names = [k for k in KERNELS]
    print(f"{args.op}, {args.threads} thread(s), {args.reps} reps; per kernel: ms per call (GB/s of the bytes it moves)\n")
    print("| shape | op ms | copy ms (GB/s) | " + " | ".join(names) + " | rest ms |")
    print("|---|---|---|" + "---|" * len(names) + "---|")
    for shape in SHAPES:
        per_call, op_ms, copy_ms, nbytes = profile(bench, shape, args.threads, args.op, args.reps)
        cells = []
        for k in names:
            ms = per_call[k]
            cells.append(f"{ms:.3f} ({KERNELS[k] * nbytes / (ms * 1e6):.0f})" if ms > 0 else "-")
        rest = op_ms * args.threads - sum(per_call.values())  # kernel times are CPU time summed over threads
        print(f"| {'x'.join(map(str, shape))} | {op_ms:.3f} | {copy_ms:.3f} ({2 * nbytes / (copy_ms * 1e6):.0f}) | "
              + " | ".join(cells) + f" | {rest:.3f} |")
    print("\nKernel times are CPU time per call (summed over threads); the op's is wall time (median). "
          "rest = op ms x threads - the kernels.")


if __name__ == "__main__":
    main()

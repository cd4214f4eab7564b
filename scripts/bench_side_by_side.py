#!/usr/bin/env python3
"""Side-by-side benchmark: ctorch against PyTorch on the same shapes, threads and machine.

Runs our C benchmark and the equivalent PyTorch code alternately (one shape at a time, in
separate processes so that each gets its own thread settings), then prints a table of times
and ratios. Run with Debian's interpreter, which sees python3-torch:

    /usr/bin/python3 scripts/bench_side_by_side.py [--build build/release] [--reps 50]

PyTorch runs with OPENBLAS_NUM_THREADS=1 so that its BLAS threads do not fight its OpenMP
threads. Pass --unset-coretype to drop OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for both sides.
"""
import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14), (128, 64, 8, 8), (32, 64, 56, 56), (20, 100, 35, 45),
          (256, 16, 32, 32)]
OPS = ["train_fwd", "eval_fwd", "train_fwdbwd"]


def torch_worker(shape, threads, reps):
    """Times PyTorch's BatchNorm2d exactly as bench/bench_batch_norm.c times ours."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, c, h, w = shape
    x = torch.randn(n, c, h, w)
    dy = torch.randn(n, c, h, w)
    bn = torch.nn.BatchNorm2d(c)
    out = {}

    def timeit(fn):
        for _ in range(reps // 10 + 2):
            fn()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(samples), min(samples)

    def train_fwd():
        with torch.no_grad():
            bn(x)

    def eval_fwd():
        with torch.no_grad():
            bn(x)

    def train_fwdbwd():
        xg = x.detach().requires_grad_()
        bn.zero_grad(set_to_none=True)
        bn(xg).backward(dy)

    bn.train()
    out["train_fwd"] = timeit(train_fwd)
    bn.eval()
    out["eval_fwd"] = timeit(eval_fwd)
    bn.train()
    out["train_fwdbwd"] = timeit(train_fwdbwd)
    print(json.dumps(out))


def env_for(unset_coretype, torch_side):
    env = dict(os.environ)
    if unset_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if torch_side:
        env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def run_ours(binary, shape, threads, reps, env):
    res = subprocess.run([binary, "--threads", str(threads), "--reps", str(reps), "--shape",
                          ",".join(map(str, shape))], capture_output=True, text=True, env=env, check=True)
    rows = {}
    lines = [l for l in res.stdout.splitlines() if l and not l.startswith("#")]
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        rows[row["op"]] = (float(row["median_ms"]), float(row["min_ms"]))
    core = [l for l in res.stdout.splitlines() if l.startswith("# openblas core")]
    return rows, (core[0].split(":", 1)[1].strip() if core else "?")


def run_torch(shape, threads, reps, env):
    res = subprocess.run([sys.executable, __file__, "--torch-worker", ",".join(map(str, shape)), str(threads),
                          str(reps)], capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--unset-coretype", action="store_true")
    ap.add_argument("--torch-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        shape = tuple(int(v) for v in args.torch_worker[0].split(","))
        torch_worker(shape, int(args.torch_worker[1]), int(args.torch_worker[2]))
        return
    import torch
    binary = os.path.join(args.build, "bench_batch_norm")
    ours_env, torch_env = env_for(args.unset_coretype, False), env_for(args.unset_coretype, True)
    print(f"# {time.strftime('%Y-%m-%d')}  torch {torch.__version__}  cpu threads {os.cpu_count()}")
    header = f"| {'op':<13} | {'shape':<16} | thr | ctorch ms | torch ms | speed-up | ctorch/copy |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    core_seen = None
    for threads in [int(t) for t in args.threads.split(",")]:
        for shape in SHAPES:
            ours, core_seen = run_ours(binary, shape, threads, args.reps, ours_env)
            theirs = run_torch(shape, threads, args.reps, torch_env)
            copy_ms = ours["copy"][0]
            for op in OPS:
                o, t = ours[op][0], theirs[op][0]
                print(f"| {op:<13} | {'x'.join(map(str, shape)):<16} | {threads:>3} | {o:9.3f} | {t:8.3f} | "
                      f"{t / o:7.2f}x | {o / copy_ms:10.2f}x |", flush=True)
    print(f"# ctorch's OpenBLAS core: {core_seen}; speed-up = torch time / ctorch time (medians)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side benchmark: ctorch against PyTorch (and oneDNN) on the same shapes, threads and machine.

Runs our C benchmarks and the equivalent PyTorch code alternately (one shape or thread count
at a time, each in its own process so that each gets its own thread settings) and prints
markdown tables of times and ratios:

  1. BatchNorm2d: train_fwd / eval_fwd / train_fwdbwd / train_fwdbwd_relu at the six issue
     shapes, ctorch (bench_batch_norm) vs PyTorch, ctorch / same-size copy, and oneDNN's batch
     normalization primitive on nchw, nChw8c and nChw16c (bench/onednn/bench_onednn_bn.c, compiled
     here when Debian's libdnnl-dev is installed).
  2. Conv2d 3x3 forward and forward+backward (bench_conv) vs PyTorch's F.conv2d, in GFLOP/s beside
     the same-size sgemm and the machine's sgemm ceiling measured in the same process.
  3. Training step of the reference CNN at batch 64 (bench_train_step), with the per-layer-kind
     breakdown, vs the same code in PyTorch.
  4. Inference of the reference CNN in eval mode, as trained and with its BatchNorm layers folded
     into the convolutions (bench_inference), vs PyTorch's model and its fuse_conv_bn_eval fold.
  5. Peak memory (maximum resident set size) of a 100-step training loop, of the same process
     with 0 steps (libraries + model), and of the trainer (train_cnn) when it is built.

Run with Debian's interpreter, which sees python3-torch:

    /usr/bin/python3 scripts/bench_side_by_side.py --build build-bench

Thread policy: ctorch gets --threads N (torch_set_num_threads: OpenMP and OpenBLAS threads);
PyTorch gets torch.set_num_threads(N) and OPENBLAS_NUM_THREADS=1 so that its BLAS threads do
not fight its OpenMP threads; oneDNN gets omp_set_num_threads(N) (and OMP_NUM_THREADS=N).
--unset-coretype drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for every side (this command only).
See docs/benchmarks.md for what each column means.
"""
import argparse
import csv
import ctypes
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14), (128, 64, 8, 8), (32, 64, 56, 56), (20, 100, 35, 45),
          (256, 16, 32, 32)]
BN_OPS = ["train_fwd", "eval_fwd", "train_fwdbwd", "train_fwdbwd_relu"]
# (N, C, H, W, O) of bench/bench_conv.c: 3x3 convolutions with padding 1 of the example networks.
CONV_SHAPES = [(64, 1, 28, 28, 32), (64, 32, 14, 14, 64), (64, 32, 28, 28, 32), (64, 64, 14, 14, 64)]
DNNL_LAYOUTS = ["nchw", "nChw8c", "nChw16c"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DNNL_HEADER = "/usr/include/oneapi/dnnl/dnnl.h"
DNNL_SOURCE = os.path.join(ROOT, "bench", "onednn", "bench_onednn_bn.c")
# Kinds of the step breakdown, in table order: (component, pass) as printed by bench_train_step.
STEP_ROWS = [("step", "total"), ("step", "forward"), ("step", "loss"), ("step", "backward"), ("step", "optimizer"),
             ("conv", "forward"), ("conv", "backward"), ("batchnorm", "forward"), ("batchnorm", "backward"),
             ("relu", "forward"), ("relu", "backward"), ("maxpool", "forward"), ("maxpool", "backward"),
             ("flatten", "forward"), ("flatten", "backward"), ("linear", "forward"), ("linear", "backward"),
             ("loss", "forward"), ("loss", "backward"), ("optimizer", "step"), ("breakdown", "total")]


# ---------------------------------------------------------------------------------------------
# PyTorch workers (run in child processes: python3 bench_side_by_side.py --worker KIND JSON)
# ---------------------------------------------------------------------------------------------

def _timeit(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), min(samples)


def _blas_core():
    """The OpenBLAS kernel family this process uses (torch links Debian's libopenblas)."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "?"


def _vmhwm_kb():
    """Peak RSS of this process image (VmHWM); ru_maxrss would include the parent's image before exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def worker_bn(shape, threads, reps):
    """Times PyTorch's BatchNorm2d exactly as bench/bench_batch_norm.c times ours."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, c, h, w = shape
    x = torch.randn(n, c, h, w)
    dy = torch.randn(n, c, h, w)
    bn = torch.nn.BatchNorm2d(c)
    out = {}

    def fwd():
        with torch.no_grad():
            bn(x)

    def train_fwdbwd():
        xg = x.detach().requires_grad_()
        bn.zero_grad(set_to_none=True)
        bn(xg).backward(dy)

    def train_fwdbwd_relu():
        xg = x.detach().requires_grad_()
        bn.zero_grad(set_to_none=True)
        torch.relu(bn(xg)).backward(dy)

    warmup = reps // 10 + 2
    bn.train()
    out["train_fwd"] = _timeit(fwd, reps, warmup)
    bn.eval()
    out["eval_fwd"] = _timeit(fwd, reps, warmup)
    bn.train()
    out["train_fwdbwd"] = _timeit(train_fwdbwd, reps, warmup)
    out["train_fwdbwd_relu"] = _timeit(train_fwdbwd_relu, reps, warmup)
    return out


def reference_cnn():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10))


KIND_OF = {"Conv2d": "conv", "BatchNorm2d": "batchnorm", "ReLU": "relu", "MaxPool2d": "maxpool",
           "Flatten": "flatten", "Linear": "linear"}


def make_optimizer(name, params):
    """bench_train_step's --optimizer, in torch.optim (1.13's default single-tensor path)."""
    import torch
    if name == "adam":
        return torch.optim.Adam(params)
    if name == "adamw":
        return torch.optim.AdamW(params)
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def worker_step(threads, reps, batch, optimizer="sgd"):
    """The same measurements as bench/bench_train_step.c, in PyTorch (same order, same cuts)."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = reference_cnn()
    opt = make_optimizer(optimizer, model.parameters())
    x = torch.randn(batch, 1, 28, 28)
    labels = torch.randint(0, 10, (batch,))
    pc = time.perf_counter
    warmup = reps // 5 + 2

    def step():
        t0 = pc()
        opt.zero_grad(set_to_none=True)
        t1 = pc()
        logits = model(x)
        t2 = pc()
        loss = F.cross_entropy(logits, labels)
        t3 = pc()
        loss.backward()
        t4 = pc()
        opt.step()
        t5 = pc()
        return [t2 - t1, t3 - t2, t4 - t3, (t1 - t0) + (t5 - t4)]

    for _ in range(warmup):
        step()
    samples = {("step", p): [] for p in ("total", "forward", "loss", "backward", "optimizer")}
    for _ in range(reps):
        t0 = pc()
        ph = step()
        samples[("step", "total")].append(pc() - t0)
        for name, v in zip(("forward", "loss", "backward", "optimizer"), ph):
            samples[("step", name)].append(v)

    layers = list(model)
    kinds = [KIND_OF[type(m).__name__] for m in layers]
    for k in set(kinds) | {"loss"}:
        samples[(k, "forward")], samples[(k, "backward")] = [], []
    samples[("optimizer", "step")], samples[("breakdown", "total")] = [], []
    L = len(layers)
    for r in range(-warmup, reps):
        t0 = pc()
        opt.zero_grad(set_to_none=True)
        zero_t = pc() - t0
        ins, outs, fwd, bwd = [x], [], [0.0] * L, [0.0] * L
        for i, m in enumerate(layers):
            t0 = pc()
            y = m(ins[i])
            fwd[i] = pc() - t0
            outs.append(y)
            ins.append(y.detach().requires_grad_())
        t0 = pc()
        loss = F.cross_entropy(ins[L], labels)
        t1 = pc()
        loss.backward()
        loss_f, loss_b = t1 - t0, pc() - t1
        del loss
        for i in reversed(range(L)):
            t0 = pc()
            outs[i].backward(ins[i + 1].grad)
            bwd[i] = pc() - t0
            outs[i] = ins[i + 1] = None
        t0 = pc()
        opt.step()
        opt_t = zero_t + pc() - t0
        if r < 0:
            continue
        per = {}
        for i, k in enumerate(kinds):
            f, b = per.get(k, (0.0, 0.0))
            per[k] = (f + fwd[i], b + bwd[i])
        for k, (f, b) in per.items():
            samples[(k, "forward")].append(f)
            samples[(k, "backward")].append(b)
        samples[("loss", "forward")].append(loss_f)
        samples[("loss", "backward")].append(loss_b)
        samples[("optimizer", "step")].append(opt_t)
        samples[("breakdown", "total")].append(sum(fwd) + sum(bwd) + loss_f + loss_b + opt_t)
    out = {f"{c},{p}": (statistics.median(v) * 1e3, min(v) * 1e3) for (c, p), v in samples.items()}
    out["blas_core"] = _blas_core()
    return out


def worker_inference(threads, reps, batches):
    """bench/bench_inference.c in PyTorch: eval forward under no_grad, unfolded and folded."""
    import torch
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = reference_cnn()
    with torch.no_grad():  # running statistics that are not 0 and 1
        for _ in range(5):
            model(torch.randn(64, 1, 28, 28))
    model.eval()
    folded = nn.Sequential(fuse_conv_bn_eval(model[0], model[1]), *model[2:4], fuse_conv_bn_eval(model[4], model[5]),
                           *model[6:]).eval()
    out = {}
    for batch in batches:
        x = torch.randn(batch, 1, 28, 28)
        for name, m in (("unfolded", model), ("folded", folded)):
            def fwd(m=m):
                with torch.no_grad():
                    m(x)
            out[f"{name},{batch}"] = _timeit(fwd, reps, reps // 5 + 2)
    return out


def worker_memory(threads, steps, batch):
    """The training loop of bench_train_step --memory-run: `steps` steps on fresh random batches."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = reference_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        x = torch.randn(batch, 1, 28, 28)
        labels = torch.randint(0, 10, (batch,))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        opt.step()
    return {"steps": steps, "vmhwm_kb": _vmhwm_kb()}


def _read_idx(path):
    import gzip
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = bytearray(f.read())  # writable, so torch.from_numpy needs no copy
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def worker_trainer(threads, n_train, n_test, batch, data_dir, eval_batch=1000):
    """A tiny PyTorch trainer equivalent to `train_cnn --epochs 1 --limit-train N --limit-test M`,
    data handling included: the whole Fashion-MNIST (or random images when absent) read into
    float32 as x/255 normalised with 0.2860/0.3530, the first N / M images used, one shuffled
    epoch of SGD at `batch`, then the test images in eval mode in batches of 1000 (train_cnn's)."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    files = [os.path.join(data_dir, f) for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    if all(os.path.exists(f) for f in files):
        xi, yi, xt, yt = (_read_idx(f) for f in files)
        source = "fashion-mnist"
    else:
        import numpy as np
        rng = np.random.default_rng(0)
        xi, xt = rng.integers(0, 256, (60000, 28, 28), np.uint8), rng.integers(0, 256, (10000, 28, 28), np.uint8)
        yi, yt = rng.integers(0, 10, 60000), rng.integers(0, 10, 10000)
        source = "random"

    def prep(x, y, n):
        # like train_cnn: the whole set as normalised float32, then the first n (a view here)
        xs = torch.from_numpy(x).float().div_(255.0).sub_(0.2860).div_(0.3530).unsqueeze(1)
        return xs[:n], torch.from_numpy(y.astype("int64"))[:n]

    xtr, ytr = prep(xi, yi, n_train)
    xte, yte = prep(xt, yt, n_test)
    del xi, xt
    model = reference_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    perm = torch.randperm(n_train)
    for s in range(0, n_train, batch):
        idx = perm[s:s + batch]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, n_test, eval_batch):
            correct += int((model(xte[s:s + eval_batch]).argmax(1) == yte[s:s + eval_batch]).sum())
    return {"data": source, "accuracy": correct / max(n_test, 1), "vmhwm_kb": _vmhwm_kb()}


def worker_conv(threads, reps):
    """Times PyTorch's conv2d on bench/bench_conv.c's shapes, as that program times ours."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {}
    for n, c, h, w, o in CONV_SHAPES:
        x = torch.randn(n, c, h, w)
        wt = torch.randn(o, c, 3, 3)
        dy = torch.randn(n, o, h, w)

        def fwd():
            with torch.no_grad():
                F.conv2d(x, wt, padding=1)

        def fwdbwd():
            xg, wg = x.detach().requires_grad_(), wt.detach().requires_grad_()
            F.conv2d(xg, wg, padding=1).backward(dy)

        key = f"{n},{c},{h},{w},{o}"
        out["forward," + key] = _timeit(fwd, reps, reps // 10 + 2)
        out["fwdbwd," + key] = _timeit(fwdbwd, reps, reps // 10 + 2)
    return out


WORKERS = {
    "conv": lambda a: worker_conv(a["threads"], a["reps"]),
    "bn": lambda a: worker_bn(tuple(a["shape"]), a["threads"], a["reps"]),
    "step": lambda a: worker_step(a["threads"], a["reps"], a["batch"], a.get("optimizer", "sgd")),
    "memory": lambda a: worker_memory(a["threads"], a["steps"], a["batch"]),
    "inference": lambda a: worker_inference(a["threads"], a["reps"], a["batches"]),
    "trainer": lambda a: worker_trainer(a["threads"], a["n_train"], a["n_test"], a["batch"], a["data"]),
}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def env_for(args, side, threads=None):
    env = dict(os.environ)
    if args.unset_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if args.malloc_no_trim:
        env["GLIBC_TUNABLES"] = "glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=4294967296"
    if side == "torch":
        env["OPENBLAS_NUM_THREADS"] = "1"
    if side == "dnnl" and threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_measured(cmd, env):
    """Runs cmd; returns (stdout, peak RSS in KiB of that process, from wait4's rusage)."""
    # stderr goes to a file so that a chatty child cannot block on a full pipe while we read stdout
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
        out = p.stdout.read()
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)  # reaps the child ourselves to get its own rusage
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err.strip()[-500:]}")
    return out, ru.ru_maxrss


def run_worker(kind, params, env):
    out, rss = run_measured([sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(params)], env)
    return json.loads(out.strip().splitlines()[-1]), rss


def parse_csv(text):
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def comment(text, key):
    for line in text.splitlines():
        if line.startswith("# " + key):
            return line.split(":", 1)[1].strip()
    return "?"


def build_onednn(build):
    """Compiles bench/onednn/bench_onednn_bn.c into the build dir when libdnnl-dev is there."""
    if not os.path.exists(DNNL_HEADER):
        return None, "libdnnl-dev not installed (apt-get install libdnnl-dev)"
    binary = os.path.join(build, "bench_onednn_bn")
    if not os.path.exists(binary) or os.path.getmtime(binary) < max(
            os.path.getmtime(DNNL_SOURCE), os.path.getmtime(os.path.join(ROOT, "bench", "bench_util.h"))):
        cc = os.environ.get("CC", "cc")
        cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-fopenmp", DNNL_SOURCE, "-o", binary, "-ldnnl"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return None, f"compiling bench_onednn_bn failed: {res.stderr.strip()[-300:]}"
    return binary, None


def machine_line():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = open("/proc/cpuinfo").read()
        isa = "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else "no AVX2")
    except OSError:
        isa = "?"
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()
    blas = "?"
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        blas = lib.openblas_get_config().decode().split(" ")[1]
    except (OSError, AttributeError, IndexError):
        pass
    return (f"{model} ({isa}), {os.cpu_count()} cpus, Linux {platform.release()}; "
            f"{cc[0] if cc else 'cc ?'}; OpenBLAS {blas}")


def keep_min(acc, new):
    """Merges one round of medians into acc, keeping the smallest per key."""
    for k, v in new.items():
        acc[k] = min(acc.get(k, v), v)


def fmt(v, width, digits=3):
    return f"{v:{width}.{digits}f}" if v is not None else " " * (width - 1) + "-"


def ratio(a, b):
    return a / b if a and b else None


def bench_bn(args, threads_list, dnnl_bin):
    ours_bin = os.path.join(args.build, "bench_batch_norm")
    dnnl_cols = DNNL_LAYOUTS if dnnl_bin else []
    head = ("| op                | shape            | thr | ctorch ms | torch ms | speed-up | ctorch GB/s | ctorch/copy |"
            + "".join(f" dnnl {l:<7} ms |" for l in dnnl_cols)
            + (" dnnl-blocked/ctorch |" if dnnl_cols else ""))
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|", flush=True)
    impls, core = {}, "?"
    for threads in threads_list:
        for shape in SHAPES:
            sh = ",".join(map(str, shape))
            ours, theirs, dnnl = {}, {}, {}
            for _ in range(args.rounds):  # each round: ctorch, PyTorch, oneDNN; keep the best median
                out, _ = run_measured([ours_bin, "--threads", str(threads), "--reps", str(args.reps), "--shape", sh],
                                      env_for(args, "ours"))
                core = comment(out, "openblas core")
                keep_min(ours, {r["op"]: float(r["median_ms"]) for r in parse_csv(out)})
                res, _ = run_worker("bn", {"shape": shape, "threads": threads, "reps": args.reps},
                                    env_for(args, "torch"))
                keep_min(theirs, {op: v[0] for op, v in res.items()})
                if dnnl_bin:
                    out, _ = run_measured([dnnl_bin, "--threads", str(threads), "--reps", str(args.reps),
                                           "--shape", sh], env_for(args, "dnnl", threads))
                    rows = parse_csv(out)
                    keep_min(dnnl, {(r["op"], r["layout"]): float(r["median_ms"]) for r in rows})
                    for r in rows:
                        impls.setdefault((r["layout"], r["op"]), set()).add(r["impl"])
            copy_ms = ours["copy"]
            gbytes = 4e-9 * shape[0] * shape[1] * shape[2] * shape[3]
            for op in BN_OPS:
                o, t = ours[op], theirs[op]
                row = (f"| {op:<17} | {'x'.join(map(str, shape)):<16} | {threads:>3} | {o:9.3f} | {t:8.3f} | "
                       f"{t / o:7.2f}x | {2 * gbytes / (o * 1e-3):11.2f} | {o / copy_ms:10.2f}x |")
                for l in dnnl_cols:
                    row += f" {fmt(dnnl.get((op, l)), 15)} |"
                if dnnl_cols:
                    blocked = [dnnl[(op, l)] for l in ("nChw8c", "nChw16c") if (op, l) in dnnl]
                    best = min(blocked) if blocked else None
                    row += f" {fmt(ratio(best, o), 18, 2)}x |"
                print(row, flush=True)
    print(f"\nctorch's OpenBLAS core: {core}. speed-up = torch ms / ctorch ms (medians); "
          "ctorch/copy = ctorch ms / memcpy of the same bytes in the same process; "
          "GB/s = 2 x tensor bytes / median.")
    if dnnl_bin:
        desc = "; ".join(f"{l}: " + ", ".join(sorted(set().union(*(impls.get((l, op), set()) for op in BN_OPS))))
                         for l in DNNL_LAYOUTS)
        print(f"oneDNN implementations picked: {desc}. "
              "dnnl-blocked/ctorch = best blocked-layout oneDNN ms / ctorch ms (>= 1: ctorch at least as fast). "
              "A `ref` implementation is oneDNN's slow reference code (the layout has no JIT kernel "
              "for this ISA); it is timed with 3 repetitions only.")
    print()


def bench_step(args, threads_list):
    binary = os.path.join(args.build, "bench_train_step")
    head = "| component            | thr | ctorch ms | torch ms | speed-up | ctorch % | torch % |"
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|", flush=True)
    cores = set()
    for threads in threads_list:
        ours, theirs = {}, {}
        for _ in range(args.rounds):  # each round: ctorch, then PyTorch; keep the best median
            out, _ = run_measured([binary, "--threads", str(threads), "--reps", str(args.step_reps),
                                   "--batch", str(args.batch), "--optimizer", args.optimizer], env_for(args, "ours"))
            cores.add(("ctorch", comment(out, "openblas core")))
            keep_min(ours, {f"{r['component']},{r['pass']}": float(r["median_ms"]) for r in parse_csv(out)})
            res, _ = run_worker("step", {"threads": threads, "reps": args.step_reps, "batch": args.batch,
                                         "optimizer": args.optimizer}, env_for(args, "torch"))
            cores.add(("PyTorch", res.pop("blas_core")))
            keep_min(theirs, {k: v[0] for k, v in res.items()})
        o_tot, t_tot = ours["breakdown,total"], theirs["breakdown,total"]
        for comp, pas in STEP_ROWS:
            o = ours.get(f"{comp},{pas}")
            t = theirs.get(f"{comp},{pas}")
            name = f"{comp} {pas}" if comp != pas else comp
            share = comp not in ("step", "breakdown")
            print(f"| {name:<20} | {threads:>3} | {fmt(o, 9)} | {fmt(t, 8)} | {fmt(ratio(t, o), 7, 2)}x | "
                  f"{fmt(100 * o / o_tot if share and o else None, 7, 1)}% | "
                  f"{fmt(100 * t / t_tot if share and t else None, 6, 1)}% |", flush=True)
    print("\nspeed-up = torch ms / ctorch ms (medians). `step` rows: one full step (zero_grad, forward, "
          f"loss, backward, {args.optimizer} step) and its phases; the other rows: the same step cut at every layer "
          "boundary, summed per layer kind (% = share of `breakdown total`). OpenBLAS cores: "
          + ", ".join(f"{who} {c}" for who, c in sorted(cores)) + "\n")


def bench_conv(args, threads_list):
    binary = os.path.join(args.build, "bench_conv")
    head = ("| op      | N,C,H,W -> O         | thr | ctorch ms | torch ms | speed-up | ctorch GFLOP/s | "
            "same-size sgemm GFLOP/s | ctorch / sgemm |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|", flush=True)
    peaks = {}
    for threads in threads_list:
        ours, theirs, gflops = {}, {}, {}
        for _ in range(args.rounds):  # each round: ctorch, then PyTorch; keep the best median
            out, _ = run_measured([binary, "--threads", str(threads), "--reps", str(args.step_reps)],
                                  env_for(args, "ours"))
            for r in parse_csv(out):
                key = f"{r['op']},{r['N']},{r['C']},{r['H']},{r['W']},{r['O']}"
                if key not in ours or float(r["median_ms"]) < ours[key]:
                    ours[key], gflops[key] = float(r["median_ms"]), float(r["GFLOPs"])
            res, _ = run_worker("conv", {"threads": threads, "reps": args.step_reps}, env_for(args, "torch"))
            keep_min(theirs, {k: v[0] for k, v in res.items()})
        peaks[threads] = max(v for k, v in gflops.items() if k.startswith("sgemm_peak"))
        for n, c, h, w, o in CONV_SHAPES:
            key = f"{n},{c},{h},{w},{o}"
            sg = gflops.get("sgemm," + key)
            for op in ("forward", "fwdbwd"):
                ms, t, gf = ours.get(f"{op},{key}"), theirs.get(f"{op},{key}"), gflops.get(f"{op},{key}")
                shape = f"{n},{c},{h},{w} -> {o}"
                print(f"| {op:<7} | {shape:<20} | {threads:>3} | {fmt(ms, 9)} | {fmt(t, 8)} | "
                      f"{fmt(ratio(t, ms), 7, 2)}x | {fmt(gf, 14, 1)} | {fmt(sg, 23, 1)} | "
                      f"{fmt(ratio(gf, sg), 13, 2)}x |", flush=True)
    print("\nGFLOP/s counts the direct convolution's 2 N O H W C 9 flops per pass (forward + backward: three "
          "passes) whatever algorithm ran; Winograd F(2x2, 3x3) needs fewer multiplications and can beat sgemm on "
          "this count. same-size sgemm: the (O, C*9) @ (C*9, N*H*W) product of the im2col method, through "
          "torch_sgemm in the same process. speed-up = torch ms / ctorch ms (medians). The machine's sgemm "
          "ceiling (1024^3): "
          + ", ".join(f"{peaks[t]:.1f} GFLOP/s at {t} thread(s)" for t in threads_list) + ".\n")


def bench_inference(args, threads_list):
    binary = os.path.join(args.build, "bench_inference")
    batches = [int(b) for b in args.inference_batches.split(",")]
    head = ("| batch | thr | ctorch unfolded ms | ctorch folded ms | fold speed-up | torch unfolded ms | "
            "torch folded ms | torch fold speed-up | folded: torch / ctorch |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|", flush=True)
    notes = []
    for threads in threads_list:
        ours, theirs = {}, {}
        for _ in range(args.rounds):  # each round: ctorch, then PyTorch; keep the best median
            out, _ = run_measured([binary, "--threads", str(threads), "--reps", str(args.step_reps),
                                   "--batches", args.inference_batches], env_for(args, "ours"))
            notes += [l.lstrip("# ") for l in out.splitlines() if "largest difference" in l and l not in notes]
            keep_min(ours, {f"{r['model']},{r['batch']}": float(r["median_ms"]) for r in parse_csv(out)})
            res, _ = run_worker("inference", {"threads": threads, "reps": args.step_reps, "batches": batches},
                                env_for(args, "torch"))
            keep_min(theirs, {k: v[0] for k, v in res.items()})
        for b in batches:
            ou, of, tu, tf = (d.get(f"{m},{b}") for d in (ours, theirs) for m in ("unfolded", "folded"))
            print(f"| {b:>5} | {threads:>3} | {fmt(ou, 18)} | {fmt(of, 16)} | {fmt(ratio(ou, of), 12, 2)}x | "
                  f"{fmt(tu, 17)} | {fmt(tf, 15)} | {fmt(ratio(tu, tf), 18, 2)}x | {fmt(ratio(tf, of), 21, 2)}x |",
                  flush=True)
    print("\nEval-mode forward without autograd on random (batch, 1, 28, 28) input, medians. folded: each "
          "Conv2d-BatchNorm2d pair replaced by one Conv2d (ctorch: nn_module_fuse_eval, whose convolution also "
          "clamps the following ReLU block by block; PyTorch: torch.nn.utils.fusion.fuse_conv_bn_eval). "
          "fold speed-up = unfolded ms / folded ms on the same side. ctorch's check: "
          + "; ".join(dict.fromkeys(notes)) + "\n")


def run_peak(cmd, env):
    """Runs cmd; returns (stdout, peak RSS in KiB) measured by GNU time (%M), or (stdout, None)
    without /usr/bin/time. (Our own wait4 would not do: a child's ru_maxrss keeps the peak of the
    forked copy of this process, torch included, from before its exec.)"""
    if not os.path.exists("/usr/bin/time"):
        return run_measured(cmd, env)[0], None
    with tempfile.NamedTemporaryFile("r") as f:
        out, _ = run_measured(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd, env)
        return out, int(f.read().split()[-1])


def bench_memory(args, threads_list):
    steps = args.memory_steps
    binary = os.path.join(args.build, "bench_train_step")
    head = ("| run                                                   | thr | ctorch MiB | torch MiB | ctorch/torch |"
            " ctorch - base | torch - base |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|", flush=True)
    threads = threads_list[0]
    rows = []
    for n in (0, steps):
        out, o = run_peak([binary, "--threads", str(threads), "--batch", str(args.batch), "--memory-run", str(n)],
                          env_for(args, "ours"))
        o = o or int(out.strip().split(",")[-1])
        res, _ = run_worker("memory", {"threads": threads, "steps": n, "batch": args.batch}, env_for(args, "torch"))
        t = res["vmhwm_kb"]
        label = f"training loop, {n} steps of batch {args.batch}" if n else "libraries + model (0 steps)"
        rows.append((label, o, t))
    trainer = os.path.join(args.build, "train_cnn")
    note = None
    if not os.path.exists(trainer):
        note = f"{trainer} not built: trainer row skipped"
    elif "--limit-train" not in subprocess.run([trainer, "--help"], capture_output=True, text=True).stdout:
        note = "train_cnn has no --limit-train/--limit-test flags: trainer row skipped"
    elif not any(os.path.exists(os.path.join(args.data, f + ext)) for f in ("train-images-idx3-ubyte",
                 "t10k-images-idx3-ubyte") for ext in ("", ".gz")):
        note = f"Fashion-MNIST not in {args.data} (--data or CTORCH_DATA): trainer row skipped"
    elif not os.path.exists("/usr/bin/time"):
        note = "/usr/bin/time (Debian package time) not installed: trainer row skipped"
    else:
        n_train, n_test = args.trainer_train, args.trainer_test
        try:
            out, o = run_peak([trainer, "--epochs", "1", "--limit-train", str(n_train), "--limit-test", str(n_test),
                               "--batch-size", str(args.batch), "--threads", str(threads), "--data", args.data],
                              env_for(args, "ours"))
            acc = [l for l in out.splitlines() if "accuracy" in l]
            res, _ = run_worker("trainer", {"threads": threads, "n_train": n_train, "n_test": n_test,
                                            "batch": args.batch, "data": args.data}, env_for(args, "torch"))
            rows.append((f"train_cnn 1 epoch, {n_train} train / {n_test} test", o, res["vmhwm_kb"]))
            note = (f"trainer data: {res['data']}; test accuracy after the epoch: ctorch "
                    f"{acc[-1].split(':')[-1].strip() if acc else '?'}, PyTorch {100 * res['accuracy']:.2f}%")
        except RuntimeError as e:
            note = f"train_cnn run failed: {e}"
    base_o, base_t = rows[0][1], rows[0][2]
    for label, o, t in rows:
        print(f"| {label:<53} | {threads:>3} | {o / 1024:10.1f} | {t / 1024:9.1f} | {o / t:11.2f}x | "
              f"{(o - base_o) / 1024:13.1f} | {(t - base_t) / 1024:12.1f} |", flush=True)
    print("\nPeak resident set size of each process (ctorch: GNU time's %M, or VmHWM without it; PyTorch: "
          "VmHWM of the worker, which includes the Python interpreter and torch's libraries). The loop rows run "
          "bench_train_step --memory-run N and the same loop in PyTorch on fresh random batches; the trainer "
          "row runs train_cnn and a PyTorch script with the same data handling (whole data set as float32, "
          "evaluation in batches of 1000). `- base`: minus the 0-step row of the same side (what the run adds "
          "to the libraries and the model).")
    if note:
        print(note)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/bench", help="build directory with the bench programs")
    ap.add_argument("--reps", type=int, default=50, help="repetitions per BatchNorm measurement")
    ap.add_argument("--step-reps", type=int, default=20, help="repetitions of the training step")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"],
                    help="the training step's optimizer (bench_train_step --optimizer)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the sides this many times and keep each one's best median")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="bn,conv,step,inference,memory",
                    help="comma list of bn, conv, step, inference, memory")
    ap.add_argument("--inference-batches", default="64,256", help="batch sizes of the inference comparison")
    ap.add_argument("--no-onednn", action="store_true", help="skip the oneDNN columns")
    ap.add_argument("--memory-steps", type=int, default=100)
    ap.add_argument("--trainer-train", type=int, default=6400)
    ap.add_argument("--trainer-test", type=int, default=1000)
    ap.add_argument("--data", default=os.environ.get("CTORCH_DATA", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--unset-coretype", action="store_true",
                    help="drop OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for every side (this command only)")
    ap.add_argument("--malloc-no-trim", action="store_true",
                    help="diagnostic: glibc never returns freed memory to the kernel (both sides)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](json.loads(args.worker[1]))))
        return
    import torch
    args.build = os.path.abspath(args.build)
    threads_list = [int(t) for t in args.threads.split(",")]
    only = set(args.only.split(","))
    dnnl_bin, dnnl_note = (None, "skipped (--no-onednn)") if args.no_onednn else build_onednn(args.build)
    dnnl_version = "-"
    if dnnl_bin:
        first = subprocess.run([dnnl_bin, "--shape", "1,1,1,1", "--reps", "1", "--layouts", "none"],
                               capture_output=True, text=True).stdout.splitlines()
        dnnl_version = first[0].lstrip("# ") if first else "oneDNN ?"
    env_desc = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                         if k in os.environ) or "OPENBLAS_CORETYPE/L2_SIZE not set"
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine_line()}")
    print(f"# torch {torch.__version__}, {dnnl_version if dnnl_bin else 'oneDNN: ' + dnnl_note}; "
          f"threads {args.threads}; {env_desc}"
          f"{' (unset for this run: --unset-coretype)' if args.unset_coretype else ''}"
          f"{'; --malloc-no-trim' if args.malloc_no_trim else ''}; load average {os.getloadavg()[0]:.2f}\n")
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("> WARNING: the machine is busy (load average above half the cpus): other processes take "
              "cores from the benchmarks, 2-thread runs suffer most; rerun when it is idle.\n")
    if "bn" in only:
        print(f"## BatchNorm2d ({args.reps} reps, {args.rounds} round(s))\n")
        bench_bn(args, threads_list, dnnl_bin)
    if "conv" in only:
        print(f"## Conv2d, 3x3, padding 1 ({args.step_reps} reps, {args.rounds} round(s))\n")
        bench_conv(args, threads_list)
    if "step" in only:
        print(f"## Training step, reference CNN, batch {args.batch} ({args.step_reps} reps, {args.rounds} round(s))\n")
        bench_step(args, threads_list)
    if "inference" in only:
        print(f"## Inference, reference CNN, BatchNorm folded or not ({args.step_reps} reps, {args.rounds} round(s))\n")
        bench_inference(args, threads_list)
    if "memory" in only:
        print("## Peak memory\n")
        bench_memory(args, threads_list)
    print(f"# done {time.strftime('%H:%M')}, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

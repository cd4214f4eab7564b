#!/usr/bin/python3
"""Writes tests/fixtures/batch_norm.bin: PyTorch reference cases for BatchNorm1d/2d/3d.

Run from anywhere with Debian's python3-torch (1.13) and python3-numpy:
    /usr/bin/python3 scripts/make_batch_norm_fixtures.py
The output is committed; the C tests (tests/test_batch_norm_fixtures.c) read it and never need torch.

Each case builds torch.nn.BatchNorm{1,2,3}d in float64, sets weight and bias to fixed non-trivial
values, and runs a sequence of steps: eval on the fresh module, five training steps, then eval
(the two (8, 16, 7, 7) cases: one training step, then eval).
Every step has its own float32 input x and a non-uniform float32 upstream gradient dy; the
reference is computed in float64 from exactly those float32 values: y, dx, dweight, dbias (the
gradients of that step alone), and the running statistics and num_batches_tracked after it.

File format (little-endian), a list of named arrays:
    magic   b"CTBNFIX1"
    count   u32                         number of records
    record  u32 name_len, name (ASCII, no NUL)
            u32 dtype                   0 = float32, 1 = float64, 2 = int64
            u32 ndim, i64 shape[ndim]
            data                        prod(shape) elements, row-major
Names: "ncases"; per case k "c<k>.config" (float64: dims, num_features, eps, momentum or NaN for
the cumulative average, affine, track_running_stats), "c<k>.nsteps", "c<k>.weight", "c<k>.bias",
and per step j "c<k>.s<j>.training" (int64 0/1), ".x", ".dy", ".y", ".dx", ".dweight", ".dbias"
(affine only), ".running_mean", ".running_var", ".num_batches_tracked" (tracking only).
"""
import math
import os
import struct

import numpy as np
import torch

F32, F64, I64 = 0, 1, 2
MODULES = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}
STEPS = [False, True, True, True, True, True, False]  # training flag per step


class Writer:
    def __init__(self):
        self.records = []

    def add(self, name, array, dtype):
        np_type = {F32: "<f4", F64: "<f8", I64: "<i8"}[dtype]
        a = np.array(array, dtype=np_type, copy=True, order="C")  # copy: .numpy() views live buffers
        self.records.append((name, dtype, a))

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"CTBNFIX1")
            f.write(struct.pack("<I", len(self.records)))
            for name, dtype, a in self.records:
                raw = name.encode("ascii")
                f.write(struct.pack("<I", len(raw)))
                f.write(raw)
                f.write(struct.pack("<II", dtype, a.ndim))
                for d in a.shape:
                    f.write(struct.pack("<q", d))
                f.write(a.tobytes())


def add_case(w, k, rng, dims, shape, momentum, affine, track, eps=1e-5, mean=0.0, std=1.0, steps=STEPS):
    C = shape[1]
    m = MODULES[dims](C, eps=eps, momentum=momentum, affine=affine, track_running_stats=track).double()
    w.add(f"c{k}.config", [dims, C, eps, math.nan if momentum is None else momentum, affine, track], F64)
    w.add(f"c{k}.nsteps", len(steps), I64)
    if affine:
        weight = rng.uniform(0.5, 1.5, C).astype(np.float32)
        bias = rng.normal(0, 0.5, C).astype(np.float32)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(weight).double())
            m.bias.copy_(torch.from_numpy(bias).double())
        w.add(f"c{k}.weight", weight, F32)
        w.add(f"c{k}.bias", bias, F32)
    # per-channel offsets and scales so that channels differ
    chan = [1] * len(shape)
    chan[1] = C
    for j, training in enumerate(steps):
        p = f"c{k}.s{j}."
        offset = rng.normal(0, 1, chan) + mean
        scale = rng.uniform(0.5, 2.0, chan) * std
        x = (rng.normal(0, 1, shape) * scale + offset).astype(np.float32)
        dy = rng.normal(0, 1, shape).astype(np.float32)  # non-uniform upstream gradient
        m.train(training)
        xt = torch.from_numpy(x).double().requires_grad_(True)
        y = m(xt)
        y.backward(torch.from_numpy(dy).double())
        w.add(p + "training", int(training), I64)
        w.add(p + "x", x, F32)
        w.add(p + "dy", dy, F32)
        w.add(p + "y", y.detach().numpy(), F64)
        w.add(p + "dx", xt.grad.numpy(), F64)
        if affine:
            w.add(p + "dweight", m.weight.grad.numpy(), F64)
            w.add(p + "dbias", m.bias.grad.numpy(), F64)
            m.weight.grad = None
            m.bias.grad = None
        if track:
            w.add(p + "running_mean", m.running_mean.numpy(), F64)
            w.add(p + "running_var", m.running_var.numpy(), F64)
            w.add(p + "num_batches_tracked", int(m.num_batches_tracked.item()), I64)


def main():
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240611)
    w = Writer()
    k = 0
    # the full grid on the small 2d shapes
    for shape, eps in [((2, 3, 4, 5), 1e-5), ((4, 8, 1, 1), 1e-3), ((1, 3, 5, 5), 1e-5)]:
        for affine in (True, False):
            for track in (True, False):
                for momentum in (0.1, 0.5, None):
                    add_case(w, k, rng, 2, shape, momentum, affine, track, eps=eps)
                    k += 1
    # a bigger 2d shape, two configurations, one training step then eval (keeps the file < 2 MB)
    add_case(w, k, rng, 2, (8, 16, 7, 7), 0.1, True, True, steps=[True, False]); k += 1
    add_case(w, k, rng, 2, (8, 16, 7, 7), None, False, True, steps=[True, False]); k += 1
    # large mean, small spread: a naive E[x^2] - E[x]^2 in float fails here
    add_case(w, k, rng, 2, (4, 8, 6, 6), 0.1, True, True, mean=1e4, std=1.0); k += 1
    add_case(w, k, rng, 2, (4, 8, 6, 6), None, True, False, mean=1e4, std=1.0); k += 1
    # BatchNorm1d on (N, C) and (N, C, L), BatchNorm3d
    add_case(w, k, rng, 1, (16, 10), 0.1, True, True); k += 1
    add_case(w, k, rng, 1, (16, 10), None, False, True); k += 1
    add_case(w, k, rng, 1, (4, 6, 9), 0.5, True, True); k += 1
    add_case(w, k, rng, 1, (4, 6, 9), 0.1, True, False); k += 1
    add_case(w, k, rng, 3, (2, 3, 3, 4, 5), 0.1, True, True); k += 1
    add_case(w, k, rng, 3, (2, 3, 3, 4, 5), None, False, True); k += 1
    w.add("ncases", k, I64)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "fixtures", "batch_norm.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w.save(path)
    print(f"wrote {k} cases, {len(w.records)} arrays, {os.path.getsize(path)} bytes to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()

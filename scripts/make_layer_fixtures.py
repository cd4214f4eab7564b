#!/usr/bin/python3
"""Writes tests/fixtures/layers.txt: PyTorch reference values for ctorch's layers and losses.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 scripts/make_layer_fixtures.py

Inputs are drawn in float32 and stored exactly (9 significant digits); the references are
computed by PyTorch in float64 from those same float32 values, so a test measures ctorch's own
float32 error and nothing else. Upstream gradients are random, not ones, so that a backward that
mixes up positions cannot pass.

Format (text, read by tests/layer_fixtures.h without dependencies): after '#' comment lines,
a sequence of records
    <name> <f32|f64|i64> <ndim> <size_0> ... <size_ndim-1>
    <numel values, whitespace separated>
"""
import os
import sys

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "layers.txt")

records = []


def put(name, t, kind):
    t = t.detach().cpu()
    if kind == "f32":
        vals = " ".join("%.9g" % v for v in t.to(torch.float32).flatten().tolist())
    elif kind == "f64":
        vals = " ".join("%.12g" % v for v in t.to(torch.float64).flatten().tolist())
    else:
        vals = " ".join("%d" % v for v in t.to(torch.int64).flatten().tolist())
    shape = " ".join(str(s) for s in t.shape)
    records.append("%s %s %d%s%s\n%s\n" % (name, kind, t.dim(), " " if t.dim() else "", shape, vals))


def ints(name, values):
    put(name, torch.tensor(values, dtype=torch.int64), "i64")


def f32(shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale)


def leaf64(t32):
    return t32.to(torch.float64).requires_grad_(True)


def conv_case(name, N, C, H, W, O, k, stride, padding, dilation, bias, unbatched=False):
    xshape = (C, H, W) if unbatched else (N, C, H, W)
    x32, w32 = f32(xshape), f32((O, C, k[0], k[1]), 0.5)
    b32 = f32((O,)) if bias else None
    x, w = leaf64(x32), leaf64(w32)
    b = leaf64(b32) if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    gy32 = f32(y.shape)
    y.backward(gy32.to(torch.float64))
    put(name + ".x", x32, "f32")
    put(name + ".w", w32, "f32")
    if bias:
        put(name + ".b", b32, "f32")
    ints(name + ".stride", list(stride))
    ints(name + ".padding", list(padding))
    ints(name + ".dilation", list(dilation))
    put(name + ".gy", gy32, "f32")
    put(name + ".y", y, "f64")
    put(name + ".gx", x.grad, "f64")
    put(name + ".gw", w.grad, "f64")
    if bias:
        put(name + ".gb", b.grad, "f64")


def linear_case(name, xshape, out, bias):
    x32, w32 = f32(xshape), f32((out, xshape[-1]), 0.5)
    b32 = f32((out,)) if bias else None
    x, w = leaf64(x32), leaf64(w32)
    b = leaf64(b32) if bias else None
    y = F.linear(x, w, b)
    gy32 = f32(y.shape)
    y.backward(gy32.to(torch.float64))
    put(name + ".x", x32, "f32")
    put(name + ".w", w32, "f32")
    if bias:
        put(name + ".b", b32, "f32")
    put(name + ".gy", gy32, "f32")
    put(name + ".y", y, "f64")
    put(name + ".gx", x.grad, "f64")
    put(name + ".gw", w.grad, "f64")
    if bias:
        put(name + ".gb", b.grad, "f64")


def pool_common(name, x32, x, y):
    gy32 = f32(y.shape)
    y.backward(gy32.to(torch.float64))
    put(name + ".x", x32, "f32")
    put(name + ".gy", gy32, "f32")
    put(name + ".y", y, "f64")
    put(name + ".gx", x.grad, "f64")


def max_pool_case(name, xshape, k, stride, padding, dilation, ceil_mode):
    x32 = f32(xshape)
    x = leaf64(x32)
    y, idx = F.max_pool2d(x, k, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
    ints(name + ".params", list(k) + list(stride) + list(padding) + list(dilation) + [int(ceil_mode)])
    put(name + ".idx", idx, "i64")
    pool_common(name, x32, x, y)


def avg_pool_case(name, xshape, k, stride, padding, ceil_mode, count_include_pad):
    x32 = f32(xshape)
    x = leaf64(x32)
    y = F.avg_pool2d(x, k, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    ints(name + ".params", list(k) + list(stride) + list(padding) + [int(ceil_mode), int(count_include_pad)])
    pool_common(name, x32, x, y)


def adaptive_case(name, xshape, out):
    x32 = f32(xshape)
    x = leaf64(x32)
    y = F.adaptive_avg_pool2d(x, out)
    ints(name + ".params", list(out))
    pool_common(name, x32, x, y)


def cross_entropy_case(name, N, C, scale):
    x32 = f32((N, C), scale)
    t = torch.randint(0, C, (N,))
    x = leaf64(x32)
    loss = F.cross_entropy(x, t)
    g = 0.75  # upstream gradient of the scalar loss
    loss.backward(torch.tensor(g, dtype=torch.float64))
    put(name + ".x", x32, "f32")
    put(name + ".t", t, "i64")
    put(name + ".loss", loss, "f64")
    put(name + ".g", torch.tensor(g), "f64")
    put(name + ".gx", x.grad, "f64")


def log_softmax_case(name, shape, dim):
    x32 = f32(shape, 3.0)
    x = leaf64(x32)
    y = F.log_softmax(x, dim)
    gy32 = f32(y.shape)
    y.backward(gy32.to(torch.float64))
    ints(name + ".dim", [dim])
    put(name + ".x", x32, "f32")
    put(name + ".gy", gy32, "f32")
    put(name + ".y", y, "f64")
    put(name + ".gx", x.grad, "f64")


def mse_case(name, shape):
    x32, t32 = f32(shape), f32(shape)
    x, t = leaf64(x32), leaf64(t32)
    loss = F.mse_loss(x, t)
    loss.backward(torch.tensor(1.5, dtype=torch.float64))
    put(name + ".x", x32, "f32")
    put(name + ".t", t32, "f32")
    put(name + ".loss", loss, "f64")
    put(name + ".g", torch.tensor(1.5), "f64")
    put(name + ".gx", x.grad, "f64")
    put(name + ".gt", t.grad, "f64")


def sequential_case(name):
    """A small CNN in train mode: conv-bn-relu-pool-conv-relu-avgpool-flatten-linear, cross_entropy.
    Stores the initial state_dict, the logits, the loss, every parameter's gradient and the
    BatchNorm running statistics after the step."""
    import torch.nn as nn
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    with torch.no_grad():  # non-trivial BatchNorm affine parameters
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    for key, value in model.state_dict().items():
        put(name + ".sd." + key, value, "i64" if value.dtype == torch.int64 else "f32")
    model = model.double().train()
    x32 = f32((5, 1, 8, 8))
    t = torch.randint(0, 3, (5,))
    y = model(x32.to(torch.float64))
    loss = F.cross_entropy(y, t)
    loss.backward()
    put(name + ".x", x32, "f32")
    put(name + ".t", t, "i64")
    put(name + ".y", y, "f64")
    put(name + ".loss", loss, "f64")
    for key, p in model.named_parameters():
        put(name + ".grad." + key, p.grad, "f64")
    for key, b in model.named_buffers():
        put(name + ".after." + key, b, "i64" if b.dtype == torch.int64 else "f64")


def main():
    torch.manual_seed(20240613)
    # conv2d: name, N, C, H, W, O, kernel, stride, padding, dilation, bias
    conv_case("conv_basic", 2, 3, 7, 7, 4, (3, 3), (1, 1), (0, 0), (1, 1), True)
    conv_case("conv_pad_nobias", 3, 2, 6, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), False)
    conv_case("conv_stride", 2, 3, 8, 7, 4, (3, 2), (2, 1), (1, 2), (1, 1), True)
    conv_case("conv_dilation", 2, 2, 9, 9, 3, (3, 3), (2, 2), (2, 2), (2, 2), True)
    conv_case("conv_asym", 1, 2, 7, 10, 3, (2, 4), (3, 2), (1, 0), (2, 1), True)
    conv_case("conv_1x1", 3, 4, 5, 5, 6, (1, 1), (1, 1), (0, 0), (1, 1), True)
    conv_case("conv_large", 2, 2, 18, 18, 3, (3, 3), (1, 1), (0, 0), (1, 1), True)  # 256 columns: one image per GEMM
    conv_case("conv_batch20", 20, 2, 4, 4, 3, (3, 3), (1, 1), (1, 1), (1, 1), True)  # several GEMM blocks
    conv_case("conv_unbatched", 1, 3, 6, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), True, unbatched=True)
    # linear
    linear_case("linear_basic", (5, 7), 3, True)
    linear_case("linear_3d_nobias", (2, 3, 7), 4, False)
    linear_case("linear_1d", (6,), 2, True)
    # pooling: name, shape, kernel, stride, padding, dilation, ceil_mode
    max_pool_case("maxpool_k2", (2, 3, 6, 7), (2, 2), (2, 2), (0, 0), (1, 1), False)
    max_pool_case("maxpool_k3s2p1", (2, 2, 7, 7), (3, 3), (2, 2), (1, 1), (1, 1), False)
    max_pool_case("maxpool_overlap_dil_ceil", (1, 2, 8, 9), (3, 2), (2, 1), (1, 1), (2, 1), True)
    max_pool_case("maxpool_unbatched", (3, 5, 5), (2, 2), (2, 2), (0, 0), (1, 1), True)
    avg_pool_case("avgpool_k2", (2, 3, 6, 7), (2, 2), (2, 2), (0, 0), False, True)
    avg_pool_case("avgpool_k3s2p1", (2, 2, 7, 7), (3, 3), (2, 2), (1, 1), False, True)
    avg_pool_case("avgpool_k3s2p1_nopad", (2, 2, 7, 7), (3, 3), (2, 2), (1, 1), False, False)
    avg_pool_case("avgpool_ceil", (1, 2, 7, 8), (3, 2), (2, 3), (1, 1), True, True)
    avg_pool_case("avgpool_ceil_nopad", (1, 2, 7, 8), (3, 2), (2, 3), (1, 1), True, False)
    adaptive_case("adaptive_1x1", (2, 3, 7, 7), (1, 1))
    adaptive_case("adaptive_3x3", (2, 3, 7, 8), (3, 3))
    adaptive_case("adaptive_2x4_unbatched", (3, 5, 5), (2, 4))
    adaptive_case("adaptive_up", (1, 2, 3, 2), (4, 5))
    # losses
    cross_entropy_case("ce_basic", 6, 5, 1.0)
    cross_entropy_case("ce_large_logits", 4, 10, 200.0)
    log_softmax_case("logsoftmax_dim1", (4, 6), 1)
    log_softmax_case("logsoftmax_dim0_3d", (3, 4, 2), 0)
    mse_case("mse_basic", (4, 5))
    # a whole network
    sequential_case("seq")

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("# ctorch layer fixtures, written by scripts/make_layer_fixtures.py with torch %s.\n" % torch.__version__)
        f.write("# Record: <name> <f32|f64|i64> <ndim> <sizes...> then the values. Do not edit by hand.\n")
        f.writelines(records)
    print("wrote %s (%d records, %d bytes)" % (os.path.normpath(OUT), len(records), os.path.getsize(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()

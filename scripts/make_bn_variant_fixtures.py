#!/usr/bin/python3
"""Writes tests/fixtures/bn_variants.safetensors: PyTorch's numbers for the BatchNorm variants of
tests/test_batch_norm_variants.c (committed; the tests never run torch).

Run with Debian's python3-torch (1.13):  /usr/bin/python3 scripts/make_bn_variant_fixtures.py

Inputs and parameters are drawn in float32 and stored as such; every reference is computed by
PyTorch in float64 from those float32 values (then stored as float32), so a test measures
ctorch's float32 error alone. Upstream gradients are random, not ones. Records, by prefix:

  frozen.*   Conv2d(3, 4, 3, padding=1, bias=False) -> BatchNorm2d(4) -> ReLU with trained-looking
             running statistics (state: frozen.0.weight, frozen.1.*), run in training mode with
             the BatchNorm in eval mode (detectron2's FrozenBatchNorm2d: the same function):
             x, dy, y, dx, grad.0.weight, grad.1.weight, grad.1.bias.
  ghost.*    BatchNorm2d(3) applied to each of x.tensor_split(3) in turn (ghost batch size 4 over
             10 rows: sub-batches of 4, 3, 3), outputs concatenated: the composition that ghost
             batch normalization must equal. State before (weight, bias, running_*,
             num_batches_tracked = 5), x, dy, y, dx, dweight, dbias, and the state after
             (after.running_mean, after.running_var, after.num_batches_tracked = 8). ghost_cma.*:
             the same with momentum=None (the cumulative average): state, x and state after.
  precise.*  torch.optim.swa_utils.update_bn(batches, model) on Conv2d(3, 4, 3, padding=1,
             bias=False) -> BatchNorm2d(4, momentum=0.3) -> ReLU -> Conv2d(4, 6, 3, padding=1) ->
             BatchNorm2d(6) -> ReLU, a model in eval mode whose buffers were not zero: state
             before (precise.<key>), batch0..batch3 (6, 6, 6 and 3 rows: the average weights
             batches, not rows), and after.<bn>.running_mean / running_var / num_batches_tracked.
  fold.*     torch.nn.utils.fusion.fuse_conv_bn_eval on the (Conv2d, BatchNorm2d) pairs 0-1 and
             4-5 of the trained reference CNN of tests/fixtures/parity_reference_cnn.safetensors:
             the folded convolutions (fold.0.weight, fold.0.bias, fold.4.weight, fold.4.bias, as
             PyTorch computes them in float32) and the folded model's eval logits on the 16
             images of parity_batch.safetensors (fold.logits, float64 forward of the float32
             folded weights; the unfolded model's are parity_batch's `logits`).
"""
import collections
import copy
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.optim.swa_utils import update_bn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, HERE)
import safetensors_convert  # noqa: E402
from make_parity_fixture import reference_cnn  # noqa: E402

SEED = 20261206
out = collections.OrderedDict()


def put(name, t):
    t = t.detach()
    out[name] = t.to(torch.float32).contiguous() if t.is_floating_point() else t.to(torch.int64).clone()


def put_state(prefix, model):
    for k, v in model.state_dict().items():
        put(prefix + k, v)


def randomise_bn(bn, count):
    """Non-trivial affine parameters and running statistics, as after training."""
    with torch.no_grad():
        c = bn.num_features
        bn.weight.copy_(torch.rand(c) + 0.5)
        bn.bias.copy_(torch.randn(c) * 0.3)
        bn.running_mean.copy_(torch.randn(c) * 0.5)
        bn.running_var.copy_(torch.rand(c) * 2 + 0.3)
        bn.num_batches_tracked.fill_(count)


def frozen():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    randomise_bn(model[1], 7)
    put_state("frozen.", model)
    x, dy = torch.randn(5, 3, 6, 6), torch.randn(5, 4, 6, 6)
    m64 = copy.deepcopy(model).double()
    m64.train()
    m64[1].eval()  # FrozenBatchNorm2d computes the eval-mode function
    x64 = x.double().requires_grad_(True)
    y = m64(x64)
    y.backward(dy.double())
    for k, v in (("x", x), ("dy", dy), ("y", y), ("dx", x64.grad), ("grad.0.weight", m64[0].weight.grad),
                 ("grad.1.weight", m64[1].weight.grad), ("grad.1.bias", m64[1].bias.grad)):
        put("frozen." + k, v)


def ghost(prefix, momentum):
    bn = nn.BatchNorm2d(3, momentum=momentum)
    randomise_bn(bn, 5)
    put_state(prefix + ".", bn)
    x, dy = torch.randn(10, 3, 4, 4) * 2 + 1, torch.randn(10, 3, 4, 4)
    b64 = copy.deepcopy(bn).double().train()
    x64 = x.double().requires_grad_(True)
    y = torch.cat([b64(part) for part in x64.tensor_split(3)])  # ceil(10 / 4) = 3 sub-batches
    y.backward(dy.double())
    for k, v in (("x", x), ("dy", dy), ("y", y), ("dx", x64.grad), ("dweight", b64.weight.grad),
                 ("dbias", b64.bias.grad), ("after.running_mean", b64.running_mean),
                 ("after.running_var", b64.running_var), ("after.num_batches_tracked", b64.num_batches_tracked)):
        if prefix == "ghost" or k == "x" or k.startswith("after."):
            put(prefix + "." + k, v)


def precise():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
    randomise_bn(model[1], 11)
    randomise_bn(model[4], 11)
    put_state("precise.", model)
    batches = [torch.randn(n, 3, 5, 5) * 1.5 + 0.5 for n in (6, 6, 6, 3)]
    for i, b in enumerate(batches):
        put("precise.batch%d" % i, b)
    m64 = copy.deepcopy(model).double().eval()
    update_bn([b.double() for b in batches], m64)
    assert not m64.training and m64[1].momentum == 0.3
    for i in (1, 4):
        for k in ("running_mean", "running_var", "num_batches_tracked"):
            put("precise.after.%d.%s" % (i, k), getattr(m64[i], k))


def fold():
    sd, _ = safetensors_convert.load_file(os.path.join(FIXTURES, "parity_reference_cnn.safetensors"))
    batch, _ = safetensors_convert.load_file(os.path.join(FIXTURES, "parity_batch.safetensors"))
    model = reference_cnn()
    model.load_state_dict(sd, strict=True)
    model.eval()
    fused = nn.Sequential(fuse_conv_bn_eval(model[0], model[1]), *model[2:4], fuse_conv_bn_eval(model[4], model[5]),
                          *model[6:])
    for i, conv in ((0, fused[0]), (4, fused[3])):
        put("fold.%d.weight" % i, conv.weight)
        put("fold.%d.bias" % i, conv.bias)
    with torch.no_grad():
        put("fold.logits", copy.deepcopy(fused).double()(batch["images"].double()))


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    frozen()
    ghost("ghost", 0.1)
    ghost("ghost_cma", None)
    precise()
    fold()
    path = os.path.join(FIXTURES, "bn_variants.safetensors")
    safetensors_convert.save_file(out, path, metadata={"generator": "scripts/make_bn_variant_fixtures.py",
                                                        "torch": torch.__version__, "seed": str(SEED)})
    print("wrote %s: %d tensors" % (os.path.relpath(path, ROOT), len(out)))


if __name__ == "__main__":
    main()

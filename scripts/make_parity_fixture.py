#!/usr/bin/python3
"""Generates the PyTorch-parity fixture of tests/test_parity.c (committed; tests never run torch).

The reference CNN of the issue tracker (the same nn.Sequential indices as examples/models.h's
reference_cnn, so the state_dict keys are the same) is trained in PyTorch 1.13 with SGD(lr 0.01,
momentum 0.9, weight decay 5e-4) for STEPS mini-batches of 64 shuffled Fashion-MNIST training
images, so that the BatchNorm running statistics and num_batches_tracked are real. Then:

  tests/fixtures/parity_reference_cnn.safetensors   model.state_dict(), written by
      scripts/safetensors_convert.py; metadata: PyTorch's eval-mode accuracy and loss over the
      full 10k test set (pytorch_test_accuracy, _correct, _loss), the seed and the step count.
  tests/fixtures/parity_batch.safetensors   N_IMAGES test images and what PyTorch gives on them:
      images          (16, 1, 28, 28) F32   x/255, then (x - 0.2860) / 0.3530, in float32
      labels          (16) I64              true classes
      test_index      (16) I64              positions in the t10k files
      logits          (16, 10) F32          eval mode, computed in float64 from the float32 weights
      logits_f32      (16, 10) F32          eval mode, PyTorch's own float32 forward
      predictions     (16) I64              argmax of logits
      test_predictions (10000) I64          eval-mode argmax over the whole test set (float32 forward)
      train.logits    (16, 10) F32          one train-mode forward of a copy of the model on the
                                            16 images (batch statistics), float64
      train.loss      () F32                cross_entropy(train.logits, labels), mean
      train.<key>     running_mean/_var/num_batches_tracked of both BatchNorms after that forward
      grad.<key>      d train.loss / d parameter for every parameter, float64 then rounded
  The 16 images are the first test image of each class plus the first six that PyTorch gets
  wrong, all with a top-1 margin of at least MIN_MARGIN so that a 1e-4 logit tolerance cannot
  flip a prediction.

Run: /usr/bin/python3 scripts/make_parity_fixture.py [--data DIR]   (from anywhere; ~1 minute)

The other direction, a model trained by ctorch checked in PyTorch:
     /usr/bin/python3 scripts/make_parity_fixture.py --eval MODEL.pt|MODEL.safetensors
loads the state_dict (strictly) into the PyTorch network and prints the eval-mode test loss and
accuracy over the full test set, in train_cnn's --eval-only format.
"""
import argparse
import collections
import copy
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, HERE)
import safetensors_convert  # noqa: E402

SEED = 20240604
STEPS = 300
BATCH = 64
MEAN, STD = 0.2860, 0.3530
N_PER_CLASS = 1
N_WRONG = 6
MIN_MARGIN = 1e-2


def reference_cnn():
    """examples/models.h reference_cnn(): the same layers at the same indices."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 10))


def read_idx(path):
    """An unsigned-byte IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def find(dir_, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{stem}[.gz] not found in {dir_}")


def load(dir_, split):
    """Images (N, 1, 28, 28) float32 normalised as torchvision's ToTensor + Normalize, labels int64."""
    x = read_idx(find(dir_, f"{split}-images-idx3-ubyte"))
    y = read_idx(find(dir_, f"{split}-labels-idx1-ubyte"))
    x = torch.from_numpy(x.astype(np.float32)).div_(255.0).unsqueeze(1)
    x = (x - torch.tensor(MEAN, dtype=torch.float32)) / torch.tensor(STD, dtype=torch.float32)
    return x.contiguous(), torch.from_numpy(y.astype(np.int64))


def f32(sd):
    """A state_dict with floating tensors rounded to float32 (int64 counters kept)."""
    return collections.OrderedDict(
        (k, v.detach().float().contiguous() if v.is_floating_point() else v.detach().clone()) for k, v in sd.items())


def evaluate(model, x, y):
    """Eval-mode (mean cross-entropy, number correct, argmax) over x in batches of 1000, float32."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    pred = logits.argmax(1)
    return F.cross_entropy(logits, y).item(), int((pred == y).sum()), logits, pred


def eval_file(path, data):
    """PyTorch's verdict on a state_dict saved by ctorch (.safetensors) or converted to .pt."""
    if path.endswith(".safetensors"):
        sd, _ = safetensors_convert.load_file(path)
    else:
        sd = torch.load(path, map_location="cpu")
    model = reference_cnn()
    model.load_state_dict(sd, strict=True)
    x, y = load(data, "t10k")
    loss, correct, _, _ = evaluate(model, x, y)
    print(f"PyTorch {torch.__version__}, {path}: {len(y)} test images")
    print(f"test loss: {loss:.4f}")
    print(f"test accuracy: {100.0 * correct / len(y):.2f}% ({correct}/{len(y)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("CTORCH_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--eval", metavar="FILE", help="only evaluate FILE (.pt or .safetensors) on the test set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.eval:
        return eval_file(args.eval, args.data)
    torch.manual_seed(SEED)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")

    # ---- train in float32 --------------------------------------------------------------------
    model = reference_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(SEED)
    order = torch.randperm(len(xtr), generator=gen)
    model.train()
    for step in range(STEPS):
        idx = order[step * BATCH:(step + 1) * BATCH]
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    sd = f32(model.state_dict())
    assert int(sd["1.num_batches_tracked"]) == STEPS

    # ---- PyTorch's own float32 eval over the full test set ------------------------------------
    test_loss, correct, logits_all, pred_all = evaluate(model, xte, yte)
    acc = 100.0 * correct / len(yte)
    print(f"PyTorch eval-mode test loss {test_loss:.4f}, accuracy {acc:.2f}% ({correct}/{len(yte)})")

    # ---- the fixture's images: one per class plus some PyTorch gets wrong, clear margins ------
    top2 = logits_all.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    chosen = []
    for c in range(10):
        cand = [i for i in range(len(yte)) if int(yte[i]) == c and margin[i] >= MIN_MARGIN]
        chosen += cand[:N_PER_CLASS]
    wrong = [i for i in range(len(yte)) if pred_all[i] != yte[i] and margin[i] >= MIN_MARGIN and i not in chosen]
    chosen += wrong[:N_WRONG]
    idx = torch.tensor(chosen, dtype=torch.int64)
    images, labels = xte[idx].contiguous(), yte[idx].contiguous()

    # ---- eval mode in float64 from the float32 weights ----------------------------------------
    m64 = reference_cnn().double()
    m64.load_state_dict(sd)  # copies (and widens) the float32 values
    m64.eval()
    with torch.no_grad():
        logits64 = m64(images.double())
        logits32 = model(images)
    preds = logits64.argmax(1)
    assert torch.equal(preds, pred_all[idx]), "float32 and float64 predictions differ on a chosen image"
    print(f"float32 vs float64 logits, max abs diff: {(logits32.double() - logits64).abs().max().item():.3g}")
    print(f"chosen test images {chosen}; min margin {margin[idx].min().item():.3g};"
          f" {int((preds != labels).sum())} wrong")

    # ---- one train-mode forward + backward on the same 16 images, float64 ---------------------
    t64 = copy.deepcopy(m64)
    t64.train()
    t64.zero_grad()
    tlogits = t64(images.double())
    tloss = F.cross_entropy(tlogits, labels)
    tloss.backward()

    batch = collections.OrderedDict()
    batch["images"] = images
    batch["labels"] = labels
    batch["test_index"] = idx
    batch["logits"] = logits64.float()
    batch["logits_f32"] = logits32
    batch["predictions"] = preds
    batch["test_predictions"] = pred_all
    batch["train.logits"] = tlogits.detach().float()
    batch["train.loss"] = tloss.detach().float().reshape(())
    tsd = t64.state_dict()
    for bn in ("1", "5"):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            k = f"{bn}.{name}"
            batch["train." + k] = tsd[k].float() if tsd[k].is_floating_point() else tsd[k].clone()
    for k, p in t64.named_parameters():
        batch["grad." + k] = p.grad.float().contiguous()

    meta = collections.OrderedDict([
        ("generator", "scripts/make_parity_fixture.py"),
        ("torch", torch.__version__),
        ("seed", str(SEED)),
        ("steps", str(STEPS)),
        ("batch_size", str(BATCH)),
        ("pytorch_test_accuracy", f"{acc:.2f}"),
        ("pytorch_test_correct", str(correct)),
        ("pytorch_test_loss", f"{test_loss:.4f}"),
        ("test_size", str(len(yte))),
    ])
    wpath = os.path.join(OUT, "parity_reference_cnn.safetensors")
    bpath = os.path.join(OUT, "parity_batch.safetensors")
    safetensors_convert.save_file(sd, wpath, metadata=meta)
    safetensors_convert.save_file(batch, bpath, metadata=collections.OrderedDict(
        [("generator", "scripts/make_parity_fixture.py"), ("torch", torch.__version__)]))
    for p in (wpath, bpath):
        print(f"wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)")


if __name__ == "__main__":
    main()

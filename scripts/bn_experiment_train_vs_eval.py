#!/usr/bin/python3
"""PyTorch's side of `bn_experiments train-vs-eval`: the same table on the same weights and test set.

The reference CNN (make_parity_fixture.reference_cnn, the indices of examples/models.h) gets the
state_dict of --load (a ctorch `train_cnn --save` file or any safetensors export), and classifies
the Fashion-MNIST test set in order, in batches of each size (the last batch may be smaller):
in training mode on a copy (batch statistics; the copy's running statistics move, as they do in
ctorch) and in eval mode (running statistics), under torch.no_grad(). Writes the CSV with
bn_experiments' columns:

  batch_size,accuracy_batch_stats,accuracy_running_stats,loss_batch_stats,loss_running_stats

Run: /usr/bin/python3 scripts/bn_experiment_train_vs_eval.py --load MODEL.safetensors \
         [--data DIR] [--batch-sizes 1,2,8,64,512] [--threads N] [--out FILE.csv]
"""
import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_parity_fixture as parity  # noqa: E402
import safetensors_convert  # noqa: E402


def run_batches(model, x, y, batch_size):
    """(accuracy, mean cross-entropy) of model on x in order, in whatever mode model is in."""
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
            loss_sum += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
    return correct / len(x), loss_sum / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", required=True, help="state_dict (safetensors) of the reference CNN")
    ap.add_argument("--data", default=os.environ.get("CTORCH_DATA") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch-sizes", default="1,2,8,64,512")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", help="CSV file (default: standard output)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sd, _ = safetensors_convert.load_file(args.load)
    model = parity.reference_cnn()
    model.load_state_dict(sd, strict=True)
    model.eval()
    x, y = parity.load(args.data, "t10k")
    lines = ["batch_size,accuracy_batch_stats,accuracy_running_stats,loss_batch_stats,loss_running_stats"]
    for b in (int(s) for s in args.batch_sizes.split(",")):
        train_copy = copy.deepcopy(model).train()
        acc_b, loss_b = run_batches(train_copy, x, y, b)
        acc_r, loss_r = run_batches(model, x, y, b)
        print(f"PyTorch {torch.__version__}: batch size {b}: batch statistics {100 * acc_b:.2f}%, "
              f"running statistics {100 * acc_r:.2f}%", file=sys.stderr)
        lines.append(f"{b},{acc_b:.4f},{acc_r:.4f},{loss_b:.4f},{loss_r:.4f}")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.out + ".tmp", args.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()

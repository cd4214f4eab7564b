#!/usr/bin/python3
"""Writes tests/fixtures/summary_fixture.h: torchinfo's summary of the examples' models, from
PyTorch (committed; the tests never run torch).

For each case, the models of examples/models.h built in PyTorch, one forward in eval mode under
no_grad, as torchinfo.summary(model, input_size) runs it:
  rows    one per module forward, in call order: class name, depth, depth index, output shape,
          parameter count and trainable parameter count (the module's and its descendants')
  totals  parameters, trainable parameters, parameter bytes, input bytes, torchinfo's
          "Forward/backward pass size" and "Total mult-adds"

With torchinfo installed (pip's torchinfo; Debian does not package it), the numbers are its own
(summary(..., verbose=0)). Without it, the same definitions are computed here with forward hooks,
written from torchinfo 1.8 (layer_info.py, model_statistics.py); the fixture says which was used.
Either way the rows (output shapes, parameter counts) are PyTorch's own, independent of ctorch;
the byte and mult-add totals follow torchinfo's formulas, which the hook version re-states.

Run: /usr/bin/python3 scripts/make_summary_fixture.py   (from anywhere)
"""
import os

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "summary_fixture.h")


def conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def reference_cnn():
    return nn.Sequential(
        conv3x3(1, 32), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        conv3x3(32, 64), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 10))


def deep_cnn():
    return nn.Sequential(
        conv3x3(1, 32), nn.BatchNorm2d(32), nn.ReLU(),
        conv3x3(32, 32), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        conv3x3(32, 64), nn.BatchNorm2d(64), nn.ReLU(),
        conv3x3(64, 64), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(3136, 128), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(128, 10))


def frozen_reference_cnn():
    """The reference CNN with its first convolution frozen (requires_grad False)."""
    m = reference_cnn()
    m[0].weight.requires_grad_(False)
    return m


CASES = [  # name, model, input shape
    ("reference", reference_cnn, (64, 1, 28, 28)),
    ("deep", deep_cnn, (8, 1, 28, 28)),
    ("frozen", frozen_reference_cnn, (2, 1, 28, 28)),
]


def count(module, trainable_only):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def summarize_with_hooks(model, shape):
    """torchinfo's rows and totals, computed the way torchinfo 1.8 computes them."""
    rows, open_rows, per_depth, handles = [], [], {}, []

    def pre(module, inputs):
        depth = len(open_rows)
        per_depth[depth] = per_depth.get(depth, 0) + 1
        row = dict(module=module, type=type(module).__name__, depth=depth,
                   index=per_depth[depth] if depth else 0, leaf=not any(module.children()),
                   params=count(module, False), trainable=count(module, True))
        open_rows.append(row)
        rows.append(row)

    def post(module, inputs, output):
        row = open_rows.pop()
        row["shape"] = list(output.shape)
        row["out_bytes"] = output.numel() * output.element_size()

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    x = torch.rand(*shape)
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()

    totals = dict(params=0, trainable=0, param_bytes=0, fwd_bwd=0, macs=0,
                  input_bytes=x.numel() * x.element_size())
    seen = set()
    for row in rows:
        m = row["module"]
        if row["leaf"] and row["params"] > 0:
            totals["fwd_bwd"] += 2 * row["out_bytes"]  # "x2 for gradients"
            for name, p in m.named_parameters():
                if name in ("weight", "bias"):
                    s = row["shape"]
                    per = s[0] * (int(torch.tensor(s[2:]).prod()) if "Conv" in row["type"] else 1)
                    totals["macs"] += p.numel() * per
        if id(m) in seen:
            continue
        seen.add(id(m))
        for p in m.parameters(recurse=False):
            totals["params"] += p.numel()
            totals["trainable"] += p.numel() if p.requires_grad else 0
            totals["param_bytes"] += p.numel() * p.element_size()
    return rows, totals


def summarize_with_torchinfo(torchinfo, model, shape):
    """torchinfo's own numbers, in the fixture's conventions: the model's row has depth index 0
    (torchinfo numbers it 1 but never prints it), and the input bytes are the tensor's (torchinfo's
    total_input adds Python's object overhead)."""
    stats = torchinfo.summary(model, input_size=shape, depth=64, verbose=0)
    rows = [dict(type=l.class_name, depth=l.depth, index=l.depth_index if l.depth else 0,
                 leaf=l.is_leaf_layer, params=l.num_params, trainable=l.trainable_params,
                 shape=list(l.output_size))
            for l in stats.summary_list]
    input_bytes = 4
    for d in shape:
        input_bytes *= d
    totals = dict(params=stats.total_params, trainable=stats.trainable_params,
                  param_bytes=stats.total_param_bytes, fwd_bwd=stats.total_output_bytes,
                  macs=stats.total_mult_adds, input_bytes=input_bytes)
    return rows, totals


def main():
    try:
        import torchinfo
        source = f"torchinfo {torchinfo.__version__}"
    except ImportError:
        torchinfo = None
        source = "torchinfo 1.8's definitions, computed with PyTorch forward hooks (torchinfo not installed)"
    torch.manual_seed(0)
    out = [f"/* Generated by scripts/make_summary_fixture.py with PyTorch {torch.__version__}; numbers from\n"
           f" * {source}. Do not edit. */",
           "#ifndef SUMMARY_FIXTURE_H", "#define SUMMARY_FIXTURE_H", "", "#include <stdint.h>", "",
           "typedef struct summary_fix_row {",
           "    const char *type;", "    int depth;", "    int64_t depth_index;", "    int ndim;",
           "    int64_t shape[4];", "    int64_t params, trainable;", "} summary_fix_row;", "",
           "typedef struct summary_fix_case {",
           "    const char *name;", "    int64_t input[4];", "    int num_rows;", "    const summary_fix_row *rows;",
           "    int64_t params, trainable, param_bytes, input_bytes, forward_backward_bytes, mult_adds;",
           "} summary_fix_case;", ""]
    cases = []
    for name, build, shape in CASES:
        model = build()
        rows, totals = (summarize_with_torchinfo(torchinfo, model, shape) if torchinfo
                        else summarize_with_hooks(model, shape))
        out.append(f"static const summary_fix_row summary_fix_{name}_rows[] = {{")
        for r in rows:
            dims = ", ".join(str(d) for d in r["shape"])
            out.append(f'    {{"{r["type"]}", {r["depth"]}, {r["index"]}, {len(r["shape"])}, {{{dims}}}, '
                       f'{r["params"]}, {r["trainable"]}}},')
        out.append("};")
        cases.append(f'    {{"{name}", {{{", ".join(map(str, shape))}}}, {len(rows)}, summary_fix_{name}_rows, '
                     f'{totals["params"]}, {totals["trainable"]}, {totals["param_bytes"]}, '
                     f'{totals["input_bytes"]}, {totals["fwd_bwd"]}, {totals["macs"]}}},')
    out += ["", "static const summary_fix_case summary_fix_cases[] = {"] + cases + ["};", "",
                                                                                    "#endif /* SUMMARY_FIXTURE_H */", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {OUT} ({source})")


if __name__ == "__main__":
    main()

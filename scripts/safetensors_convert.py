#!/usr/bin/python3
"""Convert PyTorch state_dicts to and from the safetensors format, with torch alone.

The safetensors format is written by hand here (no `safetensors` package needed): an 8-byte
little-endian header length N, N bytes of compact JSON padded with spaces to a multiple of 8,
then the tensors' bytes (row-major, little-endian) back to back in the state_dict's order.
ctorch's writer (src/io/safetensors.c) produces the same bytes for the same state_dict, so files
move both ways and can be compared byte for byte.

Usage:
  safetensors_convert.py to-safetensors MODEL.pt OUT.safetensors   # state_dict (or a module) -> safetensors
  safetensors_convert.py to-pt IN.safetensors OUT.pt               # safetensors -> state_dict (OrderedDict)
  safetensors_convert.py check IN.safetensors [--against REF]      # validate, list; compare with another file

As a module: save_file(state_dict, path, metadata=None), load_file(path) -> (OrderedDict, metadata).
"""
import argparse
import collections
import json
import os
import struct
import sys
import tempfile

import torch

MAX_HEADER = 100 * 1000 * 1000

_TO_TAG = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_TAG = {v: k for k, v in _TO_TAG.items()}


class FormatError(Exception):
    pass


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return b""
    flat = t.reshape(-1)
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits as int16
        flat = flat.view(torch.int16)
    arr = flat.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def serialize(tensors, metadata=None):
    """The file's bytes for an ordered mapping name -> tensor."""
    header = collections.OrderedDict()
    if metadata:
        header["__metadata__"] = collections.OrderedDict((str(k), str(v)) for k, v in metadata.items())
    chunks, offset = [], 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError('"__metadata__" is reserved')
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: not a tensor ({type(t).__name__})")
        if t.dtype not in _TO_TAG:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = collections.OrderedDict(
            [("dtype", _TO_TAG[t.dtype]), ("shape", list(t.shape)), ("data_offsets", [offset, offset + len(b)])])
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)


def save_file(tensors, path, metadata=None):
    """Writes atomically: a temporary file in the same directory, fsync, rename."""
    data = serialize(tensors, metadata)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _uint(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise FormatError(f"{what} is not a non-negative integer")
    return v


def parse(data, name="<memory>"):
    """(OrderedDict name -> tensor, metadata dict) from a file's bytes; strict like ctorch's reader."""
    if len(data) < 8:
        raise FormatError(f"{name}: file too short for a safetensors header")
    n = struct.unpack("<Q", data[:8])[0]
    if n > MAX_HEADER or n > len(data) - 8:
        raise FormatError(f"{name}: header length {n} exceeds the file or the limit")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{name}: bad header: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{name}: header is not a JSON object")
    buf = data[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError(f"{name}: __metadata__ must map strings to strings")
    out, spans = collections.OrderedDict(), []
    for key, info in header.items():
        try:
            dtype = _FROM_TAG[info["dtype"]]
            shape = [_uint(s, f"{key}: shape entry") for s in info["shape"]]
            begin, end = (_uint(v, f"{key}: data_offsets") for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{name}: tensor {key!r}: bad entry ({e})") from None
        numel = 1
        for s in shape:
            numel *= s
        size = numel * torch.empty((), dtype=dtype).element_size()
        if not (begin <= end <= len(buf)) or end - begin != size:
            raise FormatError(f"{name}: tensor {key!r}: data_offsets [{begin}, {end}] do not fit shape {shape}")
        spans.append((begin, end, key))
        if numel == 0:
            out[key] = torch.empty(shape, dtype=dtype)
        else:
            raw = bytearray(buf[begin:end])
            if dtype == torch.bfloat16:
                t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
            else:
                t = torch.frombuffer(raw, dtype=dtype)
            if sys.byteorder != "little" and t.element_size() > 1:
                raise FormatError("big-endian hosts are not supported by this script")
            out[key] = t.reshape(shape).clone()
    pos = 0
    for begin, end, key in sorted(spans):
        if begin != pos:
            raise FormatError(f"{name}: tensor {key!r} overlaps another or leaves a gap")
        pos = end
    if pos != len(buf):
        raise FormatError(f"{name}: the tensors do not cover the whole buffer")
    return out, metadata


def _no_duplicates(pairs):
    d = collections.OrderedDict()
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def load_file(path):
    with open(path, "rb") as f:
        return parse(f.read(), path)


def _state_dict_of(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise SystemExit("error: expected a state_dict (a dict of tensors) or an nn.Module")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("to-safetensors", help="PyTorch state_dict (.pt) -> safetensors")
    a.add_argument("input")
    a.add_argument("output")
    b = sub.add_parser("to-pt", help="safetensors -> PyTorch state_dict (.pt)")
    b.add_argument("input")
    b.add_argument("output")
    c = sub.add_parser("check", help="validate a safetensors file and list its tensors")
    c.add_argument("input")
    c.add_argument("--against", help="another safetensors file that must hold equal tensors")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "to-safetensors":
            sd = _state_dict_of(torch.load(args.input, map_location="cpu"))
            save_file(sd, args.output)
            print(f"wrote {len(sd)} tensors to {args.output}")
        elif args.cmd == "to-pt":
            sd, _ = load_file(args.input)
            torch.save(sd, args.output)
            print(f"wrote {len(sd)} tensors to {args.output}")
        else:
            sd, md = load_file(args.input)
            for k, v in md.items():
                print(f"metadata {k} = {v}")
            for k, t in sd.items():
                print(f"{k}\t{str(t.dtype).replace('torch.', '')}\t{list(t.shape)}")
            if args.against:
                ref, _ = load_file(args.against)
                bad = [k for k in ref if k not in sd or sd[k].dtype != ref[k].dtype or not torch.equal(sd[k], ref[k])]
                bad += [k for k in sd if k not in ref]
                if bad:
                    print("differ: " + ", ".join(bad))
                    return 1
                print(f"equal to {args.against}")
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

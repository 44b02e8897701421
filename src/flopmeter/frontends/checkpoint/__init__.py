"""Checkpoint files read by their headers alone: safetensors (one file, or shards with their
``model.safetensors.index.json``), GGUF, and PyTorch state dicts (``.bin``, ``.pt``, ``.pth``).

- ``read_checkpoint(path) -> Checkpoint``: every tensor's name, shape, format (dtype or
  quantization type), bytes, file and data offset; tied names (the same bytes) once.
  No tensor data is read and nothing is unpickled (PyTorch files: ``torch.load`` with
  ``weights_only=True, mmap=True`` onto the meta device only).
- ``bytes_per_param(format)``: exact bytes per weight (``Fraction(9, 16)`` for ``Q4_K``).
- ``checkpoint_report(checkpoint) -> Report``: the parameter report the renderers show.
- A folder: its index if it has one, else its ``.safetensors`` files, else its PyTorch
  index or files, else its ``.gguf`` files (a split GGUF: every part).
- GGUF needs the ``gguf`` package (``pip install 'flopmeter[checkpoints]'``); safetensors
  headers are parsed here (see :mod:`.safetensors_header` for why).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import InputError, expect_type
from .formats import Format, bytes_per_param, get_format
from .model import Checkpoint, TensorEntry, layer_group

SUFFIXES = (".safetensors", ".gguf", ".bin")
TORCH_SUFFIXES = (".bin", ".pt", ".pth")
INDEX_SUFFIX = ".index.json"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".safetensors" + INDEX_SUFFIX):
        return "safetensors-index"
    if name.endswith(tuple(s + INDEX_SUFFIX for s in TORCH_SUFFIXES)):
        return "pytorch-index"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".gguf"):
        return "gguf"
    if name.endswith(TORCH_SUFFIXES):
        return "pytorch"
    return None


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder, in the order above; [] when it has none."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and _kind(p))
    for kind in ("safetensors-index", "safetensors", "pytorch-index", "pytorch", "gguf"):
        chosen = [p for p in files if _kind(p) == kind]
        if chosen:
            return chosen[:1] if kind.endswith("index") else chosen
    return []


def is_checkpoint_spec(spec: str) -> bool:
    """A SPEC that names a checkpoint: a .safetensors, .gguf or .bin file, an index.json of
    shards, or a folder holding any of them (with or without a config.json)."""
    if not isinstance(spec, str) or spec.partition(":")[0] in ("hf", "timm", "torchvision"):
        return False
    path = Path(spec).expanduser()
    kind = _kind(path)
    if kind is not None:
        return kind != "pytorch" or path.suffix.lower() == ".bin"
    try:
        return path.is_dir() and bool(checkpoint_files(path))
    except OSError:
        return False


def read_checkpoint(path) -> Checkpoint:
    """The tensors of a checkpoint file, an index of shards, or a folder holding them."""
    import os
    expect_type(path, (str, os.PathLike), "read_checkpoint(path)", "a path to a checkpoint file or folder")
    path = Path(path).expanduser()
    if path.is_dir():
        files = checkpoint_files(path)
        if not files:
            raise InputError(f"{path} holds no checkpoint file (.safetensors, an index.json, .bin, .pt, .gguf)",
                             hint="give the folder that holds the weights, or one checkpoint file")
        parts = [_read(f) for f in files]
        return parts[0] if len(parts) == 1 else _merged(str(path), parts)
    if not path.exists():
        raise InputError(f"no such file: {path}", hint="check the path")
    return _read(path)


def _read(path: Path) -> Checkpoint:
    kind = _kind(path)
    if kind == "safetensors":
        from .safetensors_header import read_file
        return read_file(path)
    if kind == "safetensors-index":
        from .safetensors_header import read_index
        return read_index(path)
    if kind == "gguf":
        from .gguf_header import read_file
        return read_file(path)
    if kind == "pytorch":
        from .torch_file import read_file
        return read_file(path)
    if kind == "pytorch-index":
        return _torch_index(path)
    raise InputError(f"{path.name} is not a checkpoint file flopmeter reads",
                     hint="give a .safetensors, .gguf, .bin, .pt or .pth file, an index.json, or a folder")


def _torch_index(path: Path) -> Checkpoint:
    from .safetensors_header import MAX_INDEX
    if path.stat().st_size > MAX_INDEX:
        raise InputError(f"{path.name}: {path.stat().st_size:,} bytes is more than an index of names needs",
                         hint="give the index.json that the checkpoint's writer saved")
    try:
        raw = json.loads(path.read_bytes())
        shards = sorted(set(raw["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise InputError(f"{path.name} has no weight_map of tensor name → shard file",
                         hint="give a pytorch_model.bin.index.json, as save_pretrained writes it") from None
    bad = [s for s in shards if not isinstance(s, str) or Path(s).name != s or not (path.parent / s).is_file()]
    if bad:
        raise InputError(f"{path.name} names shard(s) that are not files beside it: {', '.join(map(str, bad[:3]))}",
                         hint="download every shard the index names")
    return _merged(str(path), [_read(path.parent / s) for s in shards])


def _merged(path: str, parts: list[Checkpoint]) -> Checkpoint:
    seen: dict[str, str] = {}
    for part in parts:
        for t in part.tensors:
            for n in (t.name, *t.aliases):
                if n in seen:
                    raise InputError(f"tensor '{n[:80]}' is in two files, {Path(seen[n]).name} and {Path(t.file).name}",
                                     hint="give one of the files, or the folder of one checkpoint")
                seen[n] = t.file
    reads = [p.bytes_read for p in parts]
    return Checkpoint(path, parts[0].kind, [f for p in parts for f in p.files], [t for p in parts for t in p.tensors],
                      parts[0].metadata, None if None in reads else sum(reads), sum(p.file_bytes for p in parts),
                      [n for p in parts for n in p.notes])


def checkpoint_report(checkpoint, name: str | None = None):
    """The Report of a checkpoint (a :class:`Checkpoint` or a path): parameters and bytes by
    format, per tensor and per layer; nothing is computed (no MACs, no FLOPs)."""
    from .report import checkpoint_report as build
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = read_checkpoint(checkpoint)
    return build(checkpoint, name)


__all__ = ["Checkpoint", "Format", "TensorEntry", "bytes_per_param", "checkpoint_files", "checkpoint_report",
           "get_format", "is_checkpoint_spec", "layer_group", "read_checkpoint"]

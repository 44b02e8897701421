"""PyTorch weight files (``pytorch_model.bin``, ``.pt``, ``.pth`` state dicts), read with
``torch.load(weights_only=True, mmap=True, map_location="meta")`` only.

- ``weights_only=True``: PyTorch's restricted unpickler, which builds tensors and plain
  containers and refuses anything else; a file that needs more is refused, never loaded
  another way (a full unpickler runs the file's code).
- ``mmap=True`` and the meta device: storages are mapped, not read, and the tensors are
  placed on the meta device, so no tensor data is read or allocated.
- The legacy (non-zip) format cannot be mapped: refused, with how to convert it.
- Tensors that share a storage at the same offset, shape and dtype are tied: counted once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import InputError
from .formats import SAFETENSORS
from .model import Checkpoint, TensorEntry

_BY_DTYPE = {f.dtype: f for f in SAFETENSORS.values() if f.dtype is not None}
CONVERT = ("convert it to safetensors where you trust it (safetensors.torch.save_file(torch.load(PATH), OUT)), "
           "or give a .safetensors checkpoint")


def _tensors(obj, prefix: str, out: dict, skipped: list) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _tensors(v, f"{prefix}.{k}" if prefix else str(k), out, skipped)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _tensors(v, f"{prefix}.{i}" if prefix else str(i), out, skipped)
    else:
        skipped.append(prefix)


def read_file(path: str | Path) -> Checkpoint:
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}", hint="check the path") from None
    try:
        obj = torch.load(str(path), map_location="meta", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001  (the restricted unpickler's refusals and damaged archives)
        text = str(exc)
        if "weights only load failed" in text.lower() or type(exc).__name__ == "UnpicklingError":
            raise InputError(f"{name} holds more than tensors and plain containers; flopmeter reads PyTorch files "
                             "only with torch.load(weights_only=True) and never unpickles anything else",
                             hint=CONVERT) from None
        if "mmap can only be used" in text:
            raise InputError(f"{name} is in PyTorch's legacy (non-zip) format, which cannot be read without loading "
                             "its data", hint="save it again with a current torch.save, or " + CONVERT) from None
        raise InputError(f"cannot read {name} as a PyTorch file: {type(exc).__name__}: {text.splitlines()[0][:120] if text else ''}",
                         hint="is it a file written by torch.save? " + CONVERT) from None
    found: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    _tensors(obj, "", found, skipped)
    seen: dict[tuple, int] = {}
    tensors: list[TensorEntry] = []
    aliases: dict[int, list[str]] = {}
    for key, t in found.items():
        fmt = _BY_DTYPE.get(t.dtype)
        if fmt is None:
            raise InputError(f"{name}: tensor '{key[:80]}' has dtype {t.dtype}, which flopmeter cannot size",
                             hint=CONVERT)
        tie = (t.untyped_storage()._cdata, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if tie in seen:
            aliases.setdefault(seen[tie], []).append(key)
            continue
        seen[tie] = len(tensors)
        tensors.append(TensorEntry(key, tuple(t.shape), fmt, t.numel() * t.element_size(), str(path), None))
    tensors = [TensorEntry(t.name, t.shape, t.format, t.nbytes, t.file, t.offset, tuple(aliases.get(i, ())))
               for i, t in enumerate(tensors)]
    notes = [(f"{len(skipped)} entr{'y is' if len(skipped) == 1 else 'ies are'} not tensors (not counted): "
             f"{', '.join(skipped[:3])}{', …' if len(skipped) > 3 else ''}")] if skipped else []
    return Checkpoint(str(path), "pytorch", [str(path)], tensors, {}, None, size, notes)


def state_dict(path: str | Path) -> Checkpoint | None:
    """A .pt/.pth file's tensors when it holds only tensors and plain containers (a state dict);
    None for anything else (a TorchScript archive, a pickled model: the saved-model front end's)."""
    from ..files import _is_torchscript
    path = Path(path)
    if _is_torchscript(path):
        return None
    try:
        return read_file(path)
    except InputError:
        return None


__all__ = ["read_file", "state_dict"]

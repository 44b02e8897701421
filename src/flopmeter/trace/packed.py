"""Weights that quantized modules keep in packed-parameter objects, not in ``nn.Parameter``s.

A quantized Linear or convolution (``torch.ao.nn.quantized``, static or dynamic) holds its
int8 (or float16) weight and its bias in a ``torch.ScriptObject``; a dynamically quantized
LSTM/GRU holds one ``CellParamsBase`` per layer and direction, whose state carries the packed
``w_ih`` and ``w_hh``. ``model.parameters()`` sees none of them, so a params table built from
it says a quantized model has no parameters. :func:`packed_weights` lists them as
(name, tensor) pairs, named after the module that holds them (``fc._packed_params.weight``,
``lstm._all_weight_values.0.weight_ih``, ``cell.weight_hh``), with their real element size: int8 weights as the
quantized tensors the objects unpack to (1 byte), float16 ones as float16 meta tensors (the
packed object unpacks them to float32). None of them requires grad (frozen).

Unpacking only reads the object (it returns new tensors).
"""

from __future__ import annotations

import torch
from torch import nn


_QUANTIZED = ("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def packed_weights(modules: list[tuple[str, nn.Module]]) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of every packed weight in ``modules`` (``named_modules()`` pairs)."""
    out: list[tuple[str, torch.Tensor]] = []
    for path, module in modules:
        if not type(module).__module__.startswith(_QUANTIZED):     # only quantized modules pack weights
            continue
        fp16 = torch.float16 in (getattr(module, "dtype", None), getattr(module, "weight_dtype", None))
        for attr, value in vars(module).items():
            if isinstance(value, torch.ScriptObject):
                # a cell keeps two: _packed_weight_ih and _packed_weight_hh
                suffix = attr.removeprefix("_packed_weight") if attr.startswith("_packed_weight_") else ""
                for name, t in _unpacked(value, fp16, suffix):
                    out.append((f"{path}.{name}" if path else name, t))
    return out


def _methods(obj) -> set[str]:
    try:
        return set(obj._method_names())
    except (AttributeError, RuntimeError):
        return set()


def _unpacked(obj, fp16: bool, suffix: str) -> list[tuple[str, torch.Tensor]]:
    methods = _methods(obj)
    if "unpack" in methods:                              # Linear and convolution packed params
        weight, bias = obj.unpack()
        return _pair(suffix, weight, bias, fp16)
    if "__getstate__" in methods:                        # CellParamsBase: ((kind, tensors, doubles, longs, packed), …)
        state = obj.__getstate__()
        inner = state[0] if isinstance(state, tuple) and state and isinstance(state[0], tuple) else None
        if inner and isinstance(inner[0], str) and inner[0].startswith("quantized"):
            out = []
            for suffix, packed in zip(("_ih", "_hh"), inner[-1]):
                weight, bias = packed.unpack()
                out += _pair(suffix, weight, bias, inner[0] == "quantized_fp16")
            return out
    return []


def _pair(suffix: str, weight, bias, fp16: bool) -> list[tuple[str, torch.Tensor]]:
    if fp16:
        weight = torch.empty(weight.shape, dtype=torch.float16, device="meta")
    out = [(f"weight{suffix}", weight.detach())]
    if bias is not None:
        out.append((f"bias{suffix}", bias.detach()))
    return out

"""Fake stand-ins for a model's parameters and buffers, made once per model and reused.

Making a fake tensor is an op dispatched through the FakeTensorMode; for a model with many
small tensors that costs as much as its whole fake forward. So the fakes (and the mode they
belong to) are kept in a ``WeakKeyDictionary`` keyed on the model — nothing is attached to
the model, and the entry goes when the model does. The entry is rebuilt whenever the model's
tensors change: a different tensor object, shape, stride, dtype or ``requires_grad`` under
any name, or another target device. Values are never read in fake mode, so they do not count.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .recorder import RecordingFakeMode

_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def named_tensors(model: nn.Module):
    """Every parameter and buffer under every name (tied tensors under each of their names)."""
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def fake_like(mode: FakeTensorMode, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fake tensor of t's shape, strides and dtype on ``device``; t's values are not read."""
    with mode:
        f = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
    if t.requires_grad:
        f.requires_grad_(True)
    return f


def fake_substitutes(model: nn.Module, device: torch.device) -> tuple[RecordingFakeMode, dict[str, torch.Tensor]]:
    """The (recording) fake mode and name → fake for every parameter and buffer; tied
    tensors share one."""
    named = list(named_tensors(model))
    signature = (str(device), tuple((name, id(t), t.shape, t.stride(), t.dtype, t.requires_grad)
                                    for name, t in named))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1], cached[2]
    mode = RecordingFakeMode(allow_non_fake_inputs=True)
    fakes = substitutes(named, lambda t: fake_like(mode, t, device))
    _CACHE[model] = (signature, mode, fakes)
    return mode, fakes


def substitutes(named, make) -> dict[str, torch.Tensor]:
    """name → make(tensor) for (name, tensor) pairs; a tensor under several names gets one."""
    made: dict[int, torch.Tensor] = {}
    out = {}
    for name, t in named:
        sub = made.get(id(t))
        if sub is None:
            sub = made[id(t)] = make(t)
        out[name] = sub
    return out

"""What a front end returns: a model, a way to build example inputs, and notes."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import InputError, MissingDependencyError, did_you_mean


@dataclass(frozen=True)
class InputRequest:
    """What the user asked for: explicit shapes (with dtypes), batch size, sequence length, dtype."""

    shapes: tuple = ()                 # ((shape, dtype | None), …) from --input
    batch: int | None = None
    seq_len: int | None = None
    dtype: torch.dtype | None = None   # model dtype (--dtype)
    training: bool = False             # --train: a model in training mode is what is asked for


Inputs = tuple[tuple, dict]


@dataclass
class Resolved:
    name: str
    model: nn.Module
    make_inputs: Callable[[torch.device], Inputs]      # example (args, kwargs) on a device
    rebuild: Callable[[], nn.Module] | None = None      # the same model with real (random) weights
    notes: list[str] = field(default_factory=list)
    finish: Callable | None = None      # the front end's last step on the Report (a checkpoint's stored bytes)


def import_optional(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError:
        raise MissingDependencyError(package, extra) from None


def unknown_name(kind: str, name: str, known: list[str]) -> InputError:
    hint = did_you_mean(name, known, n=3, fmt=f"{kind}:{{}}",
                        otherwise=f"{kind} knows {len(known)} names; check the spelling")
    return InputError(f"unknown {kind} model '{name}'", hint=hint)


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """Build without allocating weights; a constructor that needs real values builds on CPU."""
    try:
        with torch.device("meta"):
            return factory()
    except (NotImplementedError, RuntimeError, ValueError):
        return factory()


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def too_large(shape, dtype: torch.dtype, need: int | None = None) -> InputError:
    from ..render.units import human_unit
    need = math.prod(shape) * dtype.itemsize if need is None else need
    return InputError(f"a real-mode input of {str(dtype).replace('torch.', '')}{list(shape)} needs "
                      f"{human_unit(need, 'B')}, more memory than there is",
                      hint="count in fake mode (the default; it allocates nothing), or give a smaller --input")


def tensor(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":
        memory, need = _memory(), math.prod(shape) * dtype.itemsize
        if memory is not None and need > memory:
            raise too_large(shape, dtype, need)
    try:
        if dtype.is_floating_point or dtype.is_complex:
            return torch.randn(shape, dtype=dtype, device=device) if device.type != "meta" else \
                torch.empty(shape, dtype=dtype, device=device)
        return torch.zeros(shape, dtype=dtype, device=device)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "alloc" in str(exc):
            raise too_large(shape, dtype) from None
        raise


def shaped_inputs(req: InputRequest, default: list[tuple], float_dtype: torch.dtype):
    """The shapes to use: --input if given, else the front end's default; --batch replaces dim 0."""
    shapes = [(s, d or float_dtype) for s, d in req.shapes] if req.shapes else [(s, float_dtype) for s in default]
    if req.batch is not None:
        shapes = [((req.batch, *s[1:]), d) for s, d in shapes]
    return shapes


def refuse(option: str, why: str, hint: str | None = None) -> InputError:
    """An option this SPEC cannot honour: an error rather than a count that silently ignores it."""
    return InputError(f"{option} {why}", hint=hint)


def refuse_seq_len(req: InputRequest, name: str) -> None:
    if req.seq_len is not None:
        raise refuse("--seq-len", f"applies to hf: text models only, not to {name}",
                     hint="give this model's input shapes with --input")


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _map(value, fn):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_map(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    return value


def rebatch(args: tuple, kwargs: dict, batch: int, name: str) -> tuple[tuple, dict]:
    """A model's own example inputs at another batch size: every tensor whose first dimension is
    the examples' batch gets ``batch`` rows, repeating the given ones (so token ids stay valid)."""
    sizes = {t.shape[0] for t in _tensors((args, kwargs)) if t.ndim}
    if len(sizes) != 1:
        raise refuse("--batch", f"cannot tell the batch dimension of {name}'s own inputs "
                     f"(first dimensions: {sorted(sizes) or 'none'})", hint="give the shapes with --input")
    old = sizes.pop()

    def grow(t: torch.Tensor) -> torch.Tensor:
        if not t.ndim or t.shape[0] != old:
            return t
        return t[torch.arange(batch, device=t.device) % old]
    return _map(args, grow), _map(kwargs, grow)


def recast(args: tuple, kwargs: dict, dtype: torch.dtype) -> tuple[tuple, dict]:
    """Floating-point example inputs in another dtype (integer inputs such as token ids stay)."""
    def cast(t):
        return t.to(dtype) if t.is_floating_point() else t
    return _map(args, cast), _map(kwargs, cast)


def on_device(value, device: torch.device):
    """The same (nested) inputs with every tensor moved to ``device``."""
    return _map(value, lambda t: t.to(device))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype | None):
    """Build the weights directly in ``dtype`` (no float32 copy first; real mode needs half the memory)."""
    if dtype is None or not dtype.is_floating_point:
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)

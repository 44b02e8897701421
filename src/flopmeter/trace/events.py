"""What a trace is made of: tensor metadata and op events (no torch tensors kept)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class TensorMeta:
    """Shape and dtype of a tensor seen in a trace; nothing else is kept."""

    __slots__ = ("shape", "dtype", "numel", "nbytes")

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype):
        self.shape = shape
        self.dtype = dtype
        n = 1
        for s in shape:
            n *= s
        self.numel = n
        self.nbytes = n * dtype.itemsize if dtype is not torch.bool else n

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorMeta":
        return cls(tuple(int(s) for s in t.shape), t.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"{dt}[{', '.join(map(str, self.shape))}]"

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorMeta) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))


def to_meta(value: Any) -> Any:
    """Replace every tensor inside (nested) lists/tuples/dicts by its TensorMeta."""
    if isinstance(value, torch.Tensor):
        return TensorMeta.of(value)
    if isinstance(value, list):
        return [to_meta(v) for v in value]
    if isinstance(value, tuple):   # named tuples (torch.return_types) become plain tuples
        return tuple(to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


def tensors_in(value: Any) -> list[TensorMeta]:
    """Every TensorMeta inside a (nested) structure of metas, in order."""
    if isinstance(value, TensorMeta):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[TensorMeta] = []
        for v in value:
            out.extend(tensors_in(v))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(tensors_in(v))
        return out
    return []


@dataclass(frozen=True, slots=True)
class OpEvent:
    """One aten op that ran: its name, metadata of its arguments and results, where it ran.

    ``module`` is the innermost module path ("" is the root); ``stack`` the whole path of
    module calls, outermost first, each as ``(path, call_index)``.
    """

    op: str                      # "aten.mm" — namespace.packet, the registry key
    overload: str                # "default", "Tensor", …
    args: tuple
    kwargs: dict
    out: Any
    module: str
    stack: tuple
    phase: str = "forward"

    @property
    def inputs(self) -> list[TensorMeta]:
        return tensors_in(self.args) + tensors_in(self.kwargs)

    @property
    def outputs(self) -> list[TensorMeta]:
        return tensors_in(self.out)

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """Positional argument ``index``, else keyword ``name``, else ``default``."""
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

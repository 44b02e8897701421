"""The recording dispatch mode: every aten op that reaches dispatch becomes an OpEvent."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .events import OpEvent, to_meta
from .modules import ModuleStack

_KEYS: dict[Any, tuple[str, str]] = {}


def op_key(func) -> tuple[str, str]:
    """("aten.mm", "default") for aten.mm.default; cached per OpOverload."""
    key = _KEYS.get(func)
    if key is None:
        key = (f"{func.namespace}.{func.overloadpacket.__name__}", func._overloadname)
        _KEYS[func] = key
    return key


class Failure:
    """Where the forward failed: the op, its inputs and the module stack at that moment."""

    def __init__(self, op: str, args: tuple, kwargs: dict, module: str, stack: tuple):
        self.op, self.args, self.kwargs, self.module, self.stack = op, args, kwargs, module, stack


class Recorder(TorchDispatchMode):
    # prim ops that only ask for metadata
    _IGNORED = frozenset({"prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride",
                          "aten.sym_numel", "aten.sym_storage_offset", "aten.is_contiguous"})

    def __init__(self, modules: ModuleStack, phase: str = "forward"):
        super().__init__()
        self.modules = modules
        self.phase = phase
        self.events: list[OpEvent] = []
        self.failure: Failure | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name, overload = op_key(func)
        try:
            out = func(*args, **kwargs)
        except Exception:
            if self.failure is None:
                self.failure = Failure(name, to_meta(args), to_meta(kwargs),
                                       self.modules.current, self.modules.stack)
            raise
        if name not in self._IGNORED:
            self.events.append(OpEvent(name, overload, to_meta(args), to_meta(kwargs), to_meta(out),
                                       self.modules.current, self.modules.stack, self.phase))
        return out

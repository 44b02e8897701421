"""The Trace: everything one recorded run knows, and the only input of a report.

::

    Trace     schema, torch_version, model, options, inputs[TensorRef], modules[ModuleInfo],
              params[ParamInfo], events[OpEvent], storages{id: StorageInfo}
    OpEvent   op, overload, args/kwargs (TensorRef | scalar | list), out, module, stack, phase
              (and memo: the fake mode's dispatch-memo entry, which keeps the op's cost; not
              part of the event's value, never saved)
    TensorRef id, storage, shape, stride, offset, dtype, device, requires_grad, role

No torch tensor is kept: ids are ints, shapes are tuples. Allocation order is recoverable:
``storages[s].created`` is the index of the event whose output first held storage ``s``
(``-1``: it existed before the run — parameters, buffers, inputs), and ``freed`` the index of
the last event before the program dropped its last reference to it (``None``: still alive
when the run ended, e.g. the model's outputs). Lifetimes are the Python program's, as in
eager PyTorch, not an ideal compiler's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import OpEvent, TensorRef

TRACE_SCHEMA = "flopmeter.trace/1"


@dataclass
class StorageInfo:
    nbytes: int
    created: int = -1                 # event index that created it; -1 before the run
    freed: int | None = None          # last event before its last reference went; None: alive at the end
    device: str = "cpu"


@dataclass
class ParamInfo:
    """One unique parameter or buffer (tied tensors once, under their first name)."""

    name: str
    kind: str                         # "param" or "buffer"
    shape: tuple[int, ...]
    dtype: Any                        # torch.dtype
    requires_grad: bool
    tensor: int = -1                  # TensorRef.id of its stand-in in the run
    storage: int = -1
    aliases: tuple[str, ...] = ()     # other names of the same tensor (tied weights)
    numel: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        n = 1
        for s in self.shape:
            n *= s
        self.numel = n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def module(self) -> str:
        """The path of the module that owns it."""
        return self.name.rpartition(".")[0]


@dataclass
class ModuleInfo:
    """One module of the model (``named_modules()`` order; a shared module once, first name)."""

    path: str
    type: str                         # class name
    calls: int = 0
    outputs: list = field(default_factory=list)     # output refs, one structure per call
    inputs: list = field(default_factory=list)      # (args, kwargs) refs per call, when recorded
    layer: str | None = None          # the standard layer whose closed form applies (explain)
    config: dict = field(default_factory=dict)      # its plain attributes, for that closed form


@dataclass
class Trace:
    events: list[OpEvent]
    modules: list[ModuleInfo]
    params: list[ParamInfo]
    inputs: list[TensorRef]
    options: dict                     # mode, device, inference (and what else the run was given)
    storages: dict[int, StorageInfo] = field(default_factory=dict)
    model: str = ""                   # display name: the root's class, or the spec it came from
    torch_version: str = ""
    schema: str = TRACE_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)
    # (start, length, source): events[start:start + length] are a module call replayed from
    # events[source:source + length] (trace/replay.py); a report costs them by copying. Not saved.
    replayed: list[tuple[int, int, int]] = field(default_factory=list, repr=False, compare=False)

    @property
    def mode(self) -> str:
        return self.options.get("mode", "fake")

    @property
    def device(self) -> str:
        return self.options.get("device", "cpu")

    @property
    def inference(self) -> bool:
        return self.options.get("inference", True)

    def module(self, path: str) -> ModuleInfo | None:
        for m in self.modules:
            if m.path == path:
                return m
        return None

    @property
    def calls(self) -> dict[str, int]:
        return {m.path: m.calls for m in self.modules if m.calls}

    @property
    def outputs(self) -> dict[str, list]:
        return {m.path: m.outputs for m in self.modules if m.outputs}

    @property
    def module_inputs(self) -> dict[str, list]:
        return {m.path: m.inputs for m in self.modules if m.inputs}

"""The recorders: every aten op that reaches dispatch becomes an OpEvent.

In real mode a :class:`Recorder` (a TorchDispatchMode) sits on top of the real kernels. In
fake mode the recording is done by the FakeTensorMode itself (:class:`RecordingFakeMode`),
which saves a second Python dispatch layer per op; it records only the ops that reach it from
the model (depth 0), not those of its own decompositions — what a mode on top would see.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from .dtypes import check_dtypes
from .events import OpEvent, to_meta
from .modules import ModuleStack

_KEYS: dict[Any, tuple[str, str]] = {}

# prim ops that only ask for metadata
_IGNORED = frozenset({"prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride",
                      "aten.sym_numel", "aten.sym_storage_offset", "aten.is_contiguous"})


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


class Recording:
    """The events of one run, and where it failed."""

    def __init__(self, modules: ModuleStack, phase: str = "forward"):
        self.modules = modules
        self.phase = phase
        self.events: list[OpEvent] = []
        self.failure: Failure | None = None

    def run(self, func, args, kwargs, call):
        """``call(func, args, kwargs)`` and record it as an event (or as the failure)."""
        name, overload = op_key(func)
        try:
            out = call(func, args, kwargs)
        except Exception:
            if self.failure is None:
                self.failure = Failure(name, to_meta(args), to_meta(kwargs),
                                       self.modules.current, self.modules.stack)
            raise
        if name not in _IGNORED:
            self.events.append(OpEvent(name, overload, to_meta(args), to_meta(kwargs), to_meta(out),
                                       self.modules.current, self.modules.stack, self.phase))
        return out


def _call(func, args, kwargs):
    return func(*args, **kwargs)


class Recorder(TorchDispatchMode):
    """Records the ops of a real-tensor run."""

    def __init__(self, recording: Recording):
        super().__init__()
        self.recording = recording

    @contextmanager
    def recording_to(self, recording: Recording):
        yield self

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.recording.run(func, args, kwargs or {}, _call)


class RecordingFakeMode(FakeTensorMode):
    """A FakeTensorMode that records the ops it is given while ``recording`` is set."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recording: Recording | None = None
        self._depth = 0
        self._types = ()

    @contextmanager
    def recording_to(self, recording: Recording):
        """Record into ``recording`` for the duration (the mode is reused across runs)."""
        self.recording = recording
        try:
            yield self
        finally:
            self.recording = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        recording = self.recording
        if recording is None or self._depth:
            return super().__torch_dispatch__(func, types, args, kwargs)
        self._depth += 1
        try:
            self._types = types
            return recording.run(func, args, kwargs or {}, self._checked_call)
        finally:
            self._depth -= 1

    def _checked_call(self, func, args, kwargs):
        """The fake kernel, after the dtype check real kernels make (fake kernels do not)."""
        check_dtypes(func, args)
        return super().__torch_dispatch__(func, self._types, args, kwargs)

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
from .events import OpEvent, signature
from .modules import ModuleStack
from .refs import Refs

_KEYS: dict[Any, tuple] = {}

# prim ops that only ask for metadata
_IGNORED = frozenset({"prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride",
                      "aten.sym_numel", "aten.sym_storage_offset", "aten.is_contiguous"})


def op_key(func) -> tuple:
    """("aten.mm", "default", its Signature) for aten.mm.default; cached per OpOverload."""
    key = _KEYS.get(func)
    if key is None:
        name, overload = f"{func.namespace}.{func.overloadpacket.__name__}", func._overloadname
        key = (name, overload, signature(name, overload, func))
        _KEYS[func] = key
    return key


class Failure:
    """Where the forward failed: the op, its inputs and the module stack at that moment."""

    def __init__(self, op: str, args: tuple, kwargs: dict, module: str, stack: tuple):
        self.op, self.args, self.kwargs, self.module, self.stack = op, args, kwargs, module, stack


class Recording:
    """The events of one run, and where it failed.

    ``phase`` is stamped on every event (``forward``; a training run switches it to
    ``backward`` and ``optimizer``). ``where()`` gives the (module, stack) an op is attributed
    to: the module stack's innermost call by default — the seam where backward attribution
    (ops to the module whose forward created their inputs) plugs in.
    """

    def __init__(self, modules: ModuleStack, refs: Refs, phase: str = "forward"):
        self.modules = modules
        self.refs = refs
        self.phase = phase
        self.events: list[OpEvent] = []
        self.failure: Failure | None = None
        self.where = modules.where

    def run(self, func, args, kwargs, call):
        """``call(func, args, kwargs)`` and record it as an event (or as the failure)."""
        name, overload, sig = op_key(func)
        meta = self.refs.meta
        if name in _IGNORED:
            return call(func, args, kwargs)
        margs, mkwargs = meta(args), meta(kwargs)      # before the call: an in-place op changes them
        try:
            out = call(func, args, kwargs)
        except Exception:
            if self.failure is None:
                module, stack = self.where()
                self.failure = Failure(name, margs, mkwargs, module, stack)
            raise
        module, stack = self.where()
        self.events.append(OpEvent(name, overload, margs, mkwargs, self.refs.fresh(out), module, stack, self.phase,
                                   sig))
        self.refs.events = len(self.events)
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

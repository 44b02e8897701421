"""The recorders: every aten op that reaches dispatch becomes an OpEvent.

In real mode a :class:`Recorder` (a TorchDispatchMode) sits on top of the real kernels. In
fake mode the recording is done by the FakeTensorMode itself (:class:`RecordingFakeMode`),
which saves a second Python dispatch layer per op; it records only the ops that reach it from
the model (depth 0), not those of its own decompositions — what a mode on top would see.

In fake mode, an op whose arguments the recorder can key goes through the dispatch memo
(:mod:`.memo`) instead of FakeTensor's own cache lookup.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorMode, _BypassDispatchCache, _CacheKeyState,
                                           _device_handler)
from torch.utils._python_dispatch import TorchDispatchMode

from .dtypes import check_dtypes
from .events import OpEvent, signature
from .memo import BYPASS, MEMO, PARTS, UNSAFE_VIEW, Replay
from .modules import ModuleStack
from .refs import Refs

_KEYS: dict[Any, tuple] = {}

# prim ops that only ask for metadata
_IGNORED = frozenset({"prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride",
                      "aten.sym_numel", "aten.sym_storage_offset", "aten.is_contiguous"})


# ops that may change the size of a storage other tensors share (out= arguments are resized too)
_RESIZERS = frozenset({"aten.resize_", "aten.resize_as_", "aten.set_", "aten._resize_output_",
                       "aten.resize_as_sparse_"})


def op_key(func) -> tuple:
    """("aten.mm", "default", its Signature, whether it may resize a shared storage) for
    aten.mm.default; cached per OpOverload."""
    key = _KEYS.get(func)
    if key is None:
        name, overload = f"{func.namespace}.{func.overloadpacket.__name__}", func._overloadname
        schema = getattr(func, "_schema", None)
        resizes = name in _RESIZERS or (schema is not None and any(a.is_out for a in schema.arguments))
        key = (name, overload, signature(name, overload, func), resizes)
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
        """``call(func, args, kwargs, key)`` and record it as an event (or as the failure);
        ``key`` is the arguments' key (:meth:`.Refs.keyed`) or None."""
        name, overload, sig, resizes = op_key(func)
        refs = self.refs
        if name in _IGNORED:
            return call(func, args, kwargs, None)
        if refs.keyer is not None:       # before the call: an in-place op changes them
            margs, mkwargs, key = refs.keyed(args, kwargs)
        else:
            margs, mkwargs, key = refs.meta(args), refs.meta(kwargs), None
        try:
            out = call(func, args, kwargs, key)
        except Exception:
            if self.failure is None:
                module, stack = self.where()
                self.failure = Failure(name, margs, mkwargs, module, stack)
            raise
        if resizes:
            refs.forget_keys()
        module, stack = self.where()
        self.events.append(OpEvent(name, overload, margs, mkwargs, refs.fresh(out), module, stack, self.phase, sig))
        refs.events = len(self.events)
        return out


def _call(func, args, kwargs, key=None):
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
        keyer = recording.refs.keyer
        if self.cache_enabled and self.shape_env is None and not _tracing():    # else FakeTensor keys on more
            recording.refs.keyer = self.tensor_key
        try:
            yield self
        finally:
            self.recording = None
            recording.refs.keyer = keyer

    def tensor_key(self, t: torch.Tensor, ref):
        """The part of a dispatch key that stands for ``t`` (its metadata as FakeTensor's cache
        key reads it, ``requires_grad`` apart; shape, strides, offset, dtype and device from its
        snapshot ``ref``), or None where FakeTensor would not cache."""
        if (type(t) is not FakeTensor or t.fake_mode is not self or t.constant is not None
                or t.layout is not torch.strided or t._has_symbolic_sizes_strides):
            return None
        part = (ref.dtype, ref.shape, ref.stride, ref.offset, ref.device, t.untyped_storage().nbytes(), t.is_conj(),
                t.is_neg(), t.is_inference())
        return PARTS.setdefault(part, len(PARTS))       # an int: an op's key hashes fast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _PRIM_DEVICE:                     # what FakeTensor answers first, before anything
            return _device_handler(args)
        recording = self.recording
        if recording is None or self._depth:
            return super().__torch_dispatch__(func, types, args, kwargs)
        self._depth += 1
        try:
            self._types = types
            return recording.run(func, args, kwargs or {}, self._checked_call)
        finally:
            self._depth -= 1

    def _checked_call(self, func, args, kwargs, key):
        """The fake kernel, after the dtype check real kernels make (fake kernels do not); through
        the memo when the arguments have a key."""
        check_dtypes(func, args)
        if key is None:
            return super().__torch_dispatch__(func, self._types, args, kwargs)
        key = (id(func), torch.get_default_dtype(), torch._C._get_default_device(), torch.is_inference_mode_enabled(),
               key)
        try:
            replay = MEMO.get(key)
        except TypeError:                            # an argument that cannot be hashed
            return super().__torch_dispatch__(func, self._types, args, kwargs)
        if replay is None:
            return self._first_call(func, args, kwargs, key)
        if replay is BYPASS:
            return super().__torch_dispatch__(func, self._types, args, kwargs)
        return replay(self, args)

    def _first_call(self, func, args, kwargs, key):
        """Dispatch through FakeTensor and keep its cache entry for ``key`` as a Replay (or BYPASS)."""
        try:
            fkey = self._cache_key(_CacheKeyState(None), func, args, kwargs)
        except _BypassDispatchCache:
            fkey = None
        out = super().__torch_dispatch__(func, self._types, args, kwargs)
        replay = Replay.of_entry(FakeTensorMode.cache.get(fkey), func) if fkey is not None else None
        if replay is None and func is UNSAFE_VIEW:
            replay = Replay.of_alias(self, out, args[0])
        MEMO[key] = BYPASS if replay is None else replay
        return out


_PRIM_DEVICE = torch.ops.prim.device.default


def _tracing() -> bool:
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    return get_proxy_mode() is not None

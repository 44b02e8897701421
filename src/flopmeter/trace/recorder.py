"""The recorders: every aten op that reaches dispatch becomes an OpEvent.

In real mode a :class:`Recorder` (a TorchDispatchMode) sits on top of the real kernels. In
fake mode the recording is done by the FakeTensorMode itself (:class:`RecordingFakeMode`),
which saves a second Python dispatch layer per op; it records only the ops that reach it from
the model (depth 0), not those of its own decompositions — what a mode on top would see.

In fake mode, an op whose arguments the recorder can key goes through the dispatch memo
(:mod:`.memo`) instead of FakeTensor's own cache lookup.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorMode, _BypassDispatchCache, _CacheKeyState,
                                           _device_handler)
from torch.utils._mode_utils import no_dispatch
from torch.utils._python_dispatch import TorchDispatchMode

from .dtypes import check_dtypes
from .events import OpEvent, signature
from .memo import BYPASS, MEMO, PARTS, UNSAFE_VIEW, Replay
from .modules import ModuleStack
from .refs import Refs
from .state import written

_KEYS: dict[Any, tuple] = {}

# prim ops that only ask for metadata
_IGNORED = frozenset({"prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride",
                      "aten.sym_numel", "aten.sym_storage_offset", "aten.is_contiguous"})


# ops that may change the size of a storage other tensors share (out= arguments are resized too)
_RESIZERS = frozenset({"aten.resize_", "aten.resize_as_", "aten.set_", "aten._resize_output_",
                       "aten.resize_as_sparse_"})


def op_key(func) -> tuple:
    """("aten.mm", "default", its Signature, whether it may resize a shared storage, the
    arguments it writes or None) for aten.mm.default; cached per OpOverload."""
    key = _KEYS.get(func)
    if key is None:
        name, overload = f"{func.namespace}.{func.overloadpacket.__name__}", func._overloadname
        schema = getattr(func, "_schema", None)
        resizes = name in _RESIZERS or (schema is not None and any(a.is_out for a in schema.arguments))
        key = (name, overload, signature(name, overload, func), resizes, written(func))
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
    (ops to the module whose forward created their inputs) plugs in. ``guard(writes, args,
    kwargs) -> (args, kwargs)`` sees every op that writes an argument before it runs
    (:mod:`.state`: the user's tensors outside the parameters and buffers stay as found).
    """

    def __init__(self, modules: ModuleStack, refs: Refs, phase: str = "forward"):
        self.modules = modules
        self.refs = refs
        self.phase = phase
        self.events: list[OpEvent] = []
        self.failure: Failure | None = None
        self.where = modules.where
        self.entry = None            # the memo entry (Replay) the op in flight went through, set by the fake mode
        self.guard = None
        self.results = None          # op → fix(mode, args, out): a device's own results (CPU fakes as CUDA)

    def run(self, func, args, kwargs, call):
        """``call(func, args, kwargs, key)`` and record it as an event (or as the failure);
        ``key`` is the arguments' key (:meth:`.Refs.keyed`) or None."""
        name, overload, sig, resizes, writes = op_key(func)
        refs = self.refs
        if name in _IGNORED:
            return call(func, args, kwargs, None)
        if refs.keyer is not None:       # before the call: an in-place op changes them
            margs, mkwargs, key = refs.keyed(args, kwargs)
        else:
            margs, mkwargs, key = refs.meta(args), refs.meta(kwargs), None
        if writes is not None and self.guard is not None:
            args, kwargs = self.guard(writes, args, kwargs)
        self.entry = None
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
        self.events.append(OpEvent(name, overload, margs, mkwargs, refs.fresh(out), module, stack, self.phase, sig,
                                   self.entry))
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
        self._made: dict[torch.device, dict | None] = {}     # device → a new fake's attributes (None: no shortcut)

    def fake(self, meta: torch.Tensor, device: torch.device) -> FakeTensor:
        """``FakeTensor(self, meta, device)``: the fake tensor this mode's kernels make of a meta
        tensor, made faster — FakeTensor's constructor sets a dozen attributes one by one, through
        descriptors, to values that depend only on the mode and the device; here they are copied
        in one step from the first fake made for that device. The shortcut is taken only after
        checking, on that first fake, that it makes the same tensor: the same attributes, device,
        dispatch keys and ``requires_grad`` (else — a device FakeTensor renames, another PyTorch
        — every fake on that device goes through the constructor)."""
        attrs = self._made.get(device, _UNSEEN)
        if attrs is None:
            return FakeTensor(self, meta, device)
        if attrs is _UNSEEN:
            made = FakeTensor(self, meta, device)
            self._made[device] = _shortcut(self, made, device)
            return made
        return self._assembled(meta, device, attrs)

    def _assembled(self, meta: torch.Tensor, device: torch.device, attrs: dict) -> FakeTensor:
        """A fake of ``meta`` on ``device`` with the constructor's ``attrs`` (all but the mode)."""
        t = _MAKE_SUBCLASS(FakeTensor, meta, meta.requires_grad, dispatch_device=True, device_for_backend_keys=device)
        if self._allow_unsafe_data_ptr_access:        # what FakeTensor's constructor does about data_ptr
            torch._C._set_warn_deprecated_on_mutable_data_ptr(t)
        else:
            torch._C._set_throw_on_mutable_data_ptr(t)
        t.__dict__.update(attrs)
        t.fake_mode = self
        return t

    def _fill_key(self, args, kwargs):
        """The memo key of ``fill_(tensor, value)`` where ``value`` is a one-element constant (a
        lifted Python number, which has no key part: FakeTensor never caches an op on a constant):
        the tensor's key part and the value's metadata, read now. Such a fill writes the tensor in
        place and returns it, whatever the value; its first call goes through FakeTensor (which
        checks it), later ones return the tensor (:meth:`_first_call`). None when it is not one."""
        if kwargs or len(args) != 2:
            return None
        dst, value = args
        if (type(dst) is not FakeTensor or type(value) is not FakeTensor or dst.constant is not None
                or value.fake_mode is not self or type(value.constant) is not torch.Tensor or value.numel() != 1):
            return None
        part = self.recording.refs.key_part(dst) if self.recording is not None else None
        if part is None:
            return None
        return ("fill", part, dst.requires_grad, value.dtype, tuple(value.shape), value.device, value.requires_grad)

    def _lifted(self, args, kwargs) -> FakeTensor | None:
        """``torch.tensor(number)``'s lift of a one-element real tensor into the mode, as FakeTensor
        makes it — a fake whose ``constant`` is a clone of the value (so ``item()`` and constant
        propagation work) — from the value's metadata instead of FakeTensor's meta conversion
        (most of the ~0.4 ms such a lift costs; Swin's attention mask makes 45 per forward).
        None for anything else (then FakeTensor lifts it)."""
        t = args[0] if len(args) == 1 and not kwargs else None
        if (type(t) is not torch.Tensor or t.numel() != 1 or t.layout is not torch.strided or t.requires_grad
                or t.device.type == "meta" or t.is_quantized or t.is_conj() or t.is_neg()):
            return None
        if self.shape_env is not None or self.fake_tensor_converter.export or torch._guards.TracingContext.try_get():
            return None                  # FakeTensor's lift differs when tracing
        with no_dispatch():
            value = t.clone()
        meta = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
        fake = self.fake(meta, value.device)
        fake.constant = value
        # what from_real_tensor adds: a 0-d CPU integer or float64 constant remembers its item(), and
        # the constant's storage is mapped to the fake (an in-place write to an alias un-constants it)
        if value.dim() == 0 and value.device.type == "cpu" and value.dtype in _ITEM_MEMO_DTYPES:
            with no_dispatch():
                number = value.item()
            if not math.isnan(number) and not math.isinf(number):
                fake.item_memo = number
        self.fake_tensor_converter.add_constant_storage_mapping(fake)
        return fake

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
        # the fake's own device, not the reference's name for it (CPU fakes may stand for CUDA tensors)
        part = (ref.dtype, ref.shape, ref.stride, ref.offset, t.fake_device, t.untyped_storage().nbytes(), t.is_conj(),
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
        results = self.recording.results
        if results is not None and func in results:     # not through the memo: the memo's results are the CPU's
            check_dtypes(func, args)
            return results[func](self, args, super().__torch_dispatch__(func, self._types, args, kwargs))
        if key is None and func is _FILL:
            key = self._fill_key(args, kwargs)
        replay = None
        if key is not None:
            key = (id(func), torch.get_default_dtype(), torch._C._get_default_device(),
                   torch.is_inference_mode_enabled(), key)
            try:
                replay = MEMO.get(key)
            except TypeError:                        # an argument that cannot be hashed
                replay = BYPASS
            if replay is not None and replay is not BYPASS:
                self.recording.entry = replay
                return replay(self, args)            # its dtypes (in the key) were checked at its first call
        check_dtypes(func, args)
        if func in _LIFTS:
            lifted = self._lifted(args, kwargs)
            if lifted is not None:
                return lifted
        if key is None or replay is BYPASS:
            return super().__torch_dispatch__(func, self._types, args, kwargs)
        return self._first_call(func, args, kwargs, key)

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
        if replay is None and func is _FILL and out is args[0] and args[0].constant is None:
            replay = Replay.in_place()          # FakeTensor does not cache a fill with a constant value (_fill_key)
        MEMO[key] = BYPASS if replay is None else replay
        self.recording.entry = replay
        return out


_PRIM_DEVICE = torch.ops.prim.device.default
_LIFTS = (torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default)
_FILL = torch.ops.aten.fill_.Tensor
_ITEM_MEMO_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.float64)
_MAKE_SUBCLASS = torch.Tensor._make_subclass
_UNSEEN = object()


def _shortcut(mode: RecordingFakeMode, made: FakeTensor, device: torch.device) -> dict | None:
    """The attributes a new fake on ``device`` gets (without the mode), if a fake made from them
    is the same as ``made``, FakeTensor's own; else None."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorConfig
        if FakeTensorConfig.debug or made.fake_device != device:
            return None
        attrs = {k: v for k, v in made.__dict__.items() if k != "fake_mode"}
        meta = torch.empty_strided(made.shape, made.stride(), dtype=made.dtype, device="meta")
        twin = mode._assembled(meta.requires_grad_(made.requires_grad), device, attrs)
        same = (twin.__dict__ == made.__dict__ and twin.device == made.device and twin.requires_grad == made.requires_grad
                and torch._C._dispatch_keys(twin) == torch._C._dispatch_keys(made))
        return attrs if same else None
    except Exception:       # noqa: BLE001 — any surprise: no shortcut, FakeTensor's constructor every time
        return None


def _tracing() -> bool:
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    return get_proxy_mode() is not None

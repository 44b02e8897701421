"""What a trace is made of: tensor references and op events (no torch tensors kept).

A :class:`TensorRef` is a snapshot of one tensor as an op saw it: a stable integer ``id`` for
the tensor object (the same tensor seen by two ops has one id), the ``storage`` it lives in
(views and in-place ops share their base's storage), its shape, strides, offset, dtype,
device, ``requires_grad`` and ``role`` — ``param``, ``buffer``, ``input`` (a model input) or
``act`` (created during the run). Ids are ``-1`` where nothing identifies the tensor (a
hand-made event, a trace from an older file).

An :class:`OpEvent` is one op that ran. Formulas read its arguments **by name** from the op's
schema (``ev.arg("bias")``), so a front end without aten ops (ONNX) can feed the same formulas
by naming its attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

ROLES = ("param", "buffer", "input", "act", "master")


class TensorRef:
    """One tensor as an op saw it (see the module docstring)."""

    __slots__ = ("id", "storage", "shape", "stride", "offset", "dtype", "device", "requires_grad", "role",
                 "numel", "nbytes")

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, *, id: int = -1, storage: int = -1,
                 stride: tuple[int, ...] | None = None, offset: int = 0, device: str = "cpu",
                 requires_grad: bool = False, role: str = "act"):
        self.id = id
        self.storage = storage
        self.shape = shape
        self.stride = stride
        self.offset = offset
        self.dtype = dtype
        self.device = device
        self.requires_grad = requires_grad
        self.role = role
        n = 1
        for s in shape:
            n *= s
        self.numel = n
        self.nbytes = n * dtype.itemsize

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorRef":
        """A reference without identity (shape, strides, dtype, device only)."""
        return cls(tuple(t.shape), t.dtype, stride=_stride(t), offset=_offset(t), device=str(t.device),
                   requires_grad=t.requires_grad)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"{dt}[{', '.join(map(str, self.shape))}]"

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorRef) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))


TensorMeta = TensorRef      # the name of earlier versions


def _stride(t: torch.Tensor):
    try:
        return tuple(t.stride())
    except RuntimeError:           # sparse and other layouts have no strides
        return None


def _offset(t: torch.Tensor) -> int:
    try:
        return t.storage_offset()
    except RuntimeError:
        return 0


def to_meta(value: Any, ref=TensorRef.of) -> Any:
    """Replace every tensor inside (nested) lists/tuples/dicts by ``ref(tensor)``."""
    if isinstance(value, torch.Tensor):
        return ref(value)
    if isinstance(value, list):
        return [to_meta(v, ref) for v in value]
    if isinstance(value, tuple):   # named tuples (torch.return_types) become plain tuples
        return tuple(to_meta(v, ref) for v in value)
    if isinstance(value, dict):
        return {k: to_meta(v, ref) for k, v in value.items()}
    return value


def tensors_in(value: Any) -> list[TensorRef]:
    """Every TensorRef inside a (nested) structure of refs, in order."""
    if type(value) is TensorRef:
        return [value]
    out: list[TensorRef] = []
    _collect(value, out)
    return out


def _collect(value: Any, out: list) -> None:
    kind = type(value)
    if kind is TensorRef:
        out.append(value)
    elif kind is tuple or kind is list:
        for v in value:
            if type(v) is TensorRef:
                out.append(v)
            elif isinstance(v, (list, tuple, dict)):
                _collect(v, out)
    elif kind is dict:
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out)


# -- argument names from op schemas ----------------------------------------------

_NO_DEFAULT = object()
_SIGNATURES: dict[tuple[str, str], "Signature"] = {}


class Signature:
    """Positional names and defaults of an op's arguments: ``names.index(name)`` without a scan."""

    __slots__ = ("position", "defaults")

    def __init__(self, names: tuple[str, ...], defaults: dict[str, Any] | None = None):
        self.position = {n: i for i, n in enumerate(names)}
        self.defaults = defaults or {}


def signature(op: str, overload: str, func=None) -> Signature:
    """The argument names of ``op.overload`` (from torch's schema; cached per overload)."""
    key = (op, overload)
    sig = _SIGNATURES.get(key)
    if sig is None:
        sig = Signature(())
        try:
            if func is None:
                ns, name = op.split(".", 1)
                func = getattr(getattr(getattr(torch.ops, ns), name), overload)
            arguments = func._schema.arguments
            sig = Signature(tuple(a.name for a in arguments),
                            {a.name: a.default_value for a in arguments if a.has_default_value()})
        except (AttributeError, ValueError, RuntimeError):
            pass
        _SIGNATURES[key] = sig
    return sig


@dataclass(frozen=True, slots=True)
class OpEvent:
    """One op that ran: its name, its arguments (tensors as TensorRefs), results, where and when.

    ``module`` is the innermost module path ("" is the root); ``stack`` the whole path of
    module calls, outermost first, each as ``(path, call_index)``; ``phase`` is ``forward``,
    ``backward`` or ``optimizer``. ``sig`` names the positional arguments (from the op schema,
    or given by a front end such as ONNX). ``memo`` is the fake mode's dispatch-memo entry the op
    went through (:class:`.memo.Replay`), which keeps the op's cost for every later event of the
    same key; None for anything else. It is not part of the event's value (not compared, not saved).
    """

    op: str                      # "aten.mm" — namespace.packet, the registry key
    overload: str                # "default", "Tensor", …
    args: tuple
    kwargs: dict
    out: Any
    module: str
    stack: tuple
    phase: str = "forward"
    sig: Signature | None = None
    memo: Any = field(default=None, compare=False, repr=False)

    @property
    def inputs(self) -> list[TensorRef]:
        out: list[TensorRef] = []
        _collect(self.args, out)
        if self.kwargs:
            _collect(self.kwargs, out)
        return out

    @property
    def outputs(self) -> list[TensorRef]:
        return tensors_in(self.out)

    def arg(self, name: str, default: Any = _NO_DEFAULT) -> Any:
        """The argument called ``name``: given positionally or by keyword, else the schema's
        default (or ``default`` when given)."""
        sig = self.sig or signature(self.op, self.overload)
        i = sig.position.get(name)
        if i is not None and i < len(self.args):
            return self.args[i]
        if name in self.kwargs:
            return self.kwargs[name]
        if default is not _NO_DEFAULT:
            return default
        return sig.defaults.get(name)

"""The formula registry: op name → pure function of an OpEvent's shapes → Cost.

Every op event ends in exactly one of three classes:

- ``costed``: a registered formula (or a generic rule, below) gave its Cost;
- ``free``: known to cost nothing (views, reshapes, metadata queries);
- ``unsupported``: no formula; listed in reports with call counts, never silently zero.

Lookup order for an op: its explicit formula, the explicit free set, ``TRANSCENDENTAL`` (the
one list of ops that evaluate exp, log, tanh, erf, sqrt, … : one transcendental op per output
element), then two generic rules read off PyTorch's op schema: an op whose results alias an
input (a view), or that is tagged ``inplace_view`` (restrides in place), is free, and an op
tagged ``torch.Tag.pointwise`` costs one elementwise op per output element.

The precision of an op's MACs is not a field of :class:`Cost` (Costs of different
precisions still add up); :meth:`Registry.precision` names it from the event: a formula
may register a ``precision`` function (``formulas.lowprec``: ``int8``, ``float8_e4m3fn``,
``bfloat16×int4`` …); any other op's MACs are in the dtype of its first output.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..cost import ZERO, Cost
from ..trace.events import OpEvent

Formula = Callable[[OpEvent], Cost]
Precision = Callable[[OpEvent], str]

COSTED, FREE, UNSUPPORTED = "costed", "free", "unsupported"

# (op, overload) → the generic rule read off its schema: "view", "pointwise" or None (process-wide;
# a pure function of the installed torch)
_RULES: dict[tuple[str, str], str | None] = {}

# Pointwise ops that evaluate a transcendental function (one per output element).
TRANSCENDENTAL = frozenset(
    f"aten.{n}" for n in (
        "exp exp2 expm1 log log1p log2 log10 sigmoid tanh gelu silu mish softplus elu selu celu "
        "erf erfc erfinv sqrt rsqrt sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh "
        "logit log_sigmoid_forward special_erfcx lgamma digamma glu"
    ).split()
    for n in (n, n + "_")
)


# quantized dtypes named by the integers they hold
_PLAIN = {"quint8": "uint8", "qint8": "int8", "qint32": "int32", "quint4x2": "uint4", "quint2x4": "uint2"}


def dtype_label(dtype: torch.dtype) -> str:
    """'float32', 'int8', 'float8_e4m3fn'; quantized dtypes as their integers (quint8 → uint8)."""
    name = str(dtype).removeprefix("torch.")
    return _PLAIN.get(name, name)


def operands(*labels: str) -> str:
    """One label for the operands of a product: 'int8' when they agree, else 'bfloat16×int4'."""
    return labels[0] if len(set(labels)) == 1 else "×".join(labels)


def io_bytes(ev: OpEvent) -> tuple[int, int]:
    """Bytes read (every tensor input) and written (every tensor output) by an op."""
    return sum(t.nbytes for t in ev.inputs), sum(t.nbytes for t in ev.outputs)


class Registry:
    def __init__(self) -> None:
        self._formulas: dict[str, tuple[Formula, bool]] = {}
        self._free: set[str] = set()
        self._precision: dict[str, Precision] = {}
        # a new token at every change: costs kept per memo entry (report/builder.py) are per version.
        # A token, not a counter, so that a trace carried into another process (pickled by its
        # user) never matches that process's registry by chance
        self.version = object()
        self._own_at: object | None = None     # the version ``builtin_only`` was last worked out for
        self._own = False

    # -- building -----------------------------------------------------------
    def register(self, *names: str, own_bytes: bool = False, precision: Precision | None = None):
        """Decorator: register ``fn(ev) -> Cost`` for op names like ``"aten.mm"``.

        The formula returns compute counts; bytes default to :func:`io_bytes` unless
        ``own_bytes`` says the formula sets them itself (e.g. a gather reads only rows).
        ``precision(ev)`` names the precision of the op's MACs when it is not the dtype of
        its first output (an int8 matmul writes int32). Registering a name twice is an
        error; use :meth:`override` on a copy instead.
        """
        def deco(fn: Formula) -> Formula:
            for name in names:
                if name in self._formulas or name in self._free:
                    raise ValueError(f"a formula for {name} is already registered")
                self._formulas[name] = (fn, own_bytes)
                self.version = object()
                if precision is not None:
                    self._precision[name] = precision
            return fn
        return deco

    def free(self, *names: str) -> None:
        for name in names:
            if name in self._formulas or name in self._free:
                raise ValueError(f"{name} is already registered")
            self._free.add(name)
            self.version = object()

    def copy(self) -> "Registry":
        new = Registry()
        new._formulas = dict(self._formulas)
        new._free = set(self._free)
        new._precision = dict(self._precision)
        return new

    def override(self, name: str, fn: Formula | None, *, own_bytes: bool = False,
                 precision: Precision | None = None) -> None:
        """Replace (or add) the formula for ``name`` in this registry; ``None`` marks it free.
        The op keeps its registered precision unless ``precision`` gives another."""
        self._formulas.pop(name, None)
        self._free.discard(name)
        if precision is not None:
            self._precision[name] = precision
        self.version = object()
        if fn is None:
            self._free.add(name)
        else:
            self._formulas[name] = (fn, own_bytes)

    # -- querying -----------------------------------------------------------
    def builtin_only(self) -> bool:
        """Whether every formula is one of flopmeter's own (defined in its package). Those read
        only an op's arguments and results, so a cost can be kept per dispatch-memo key and a
        replayed call costs what the call it copies cost (report/builder.py); a user's formula
        may read anything (the module path, the phase), so then every event is costed."""
        if self._own_at is not self.version:
            self._own = all(str(getattr(fn, "__module__", "")).startswith("flopmeter.")
                            for fn, _ in self._formulas.values())
            self._own_at = self.version
        return self._own

    def formula(self, name: str) -> Formula | None:
        entry = self._formulas.get(name)
        return entry[0] if entry else None

    def precision(self, ev: OpEvent) -> str | None:
        """The precision an op's MACs run in: its registered ``precision``, else the dtype
        of its first output (None for an op without outputs)."""
        fn = self._precision.get(ev.op)
        if fn is not None:
            return fn(ev)
        outs = ev.outputs
        return dtype_label(outs[0].dtype) if outs else None

    def names(self) -> list[str]:
        return sorted(self._formulas)

    def __contains__(self, name: str) -> bool:
        return name in self._formulas or name in self._free

    def classify(self, ev: OpEvent) -> tuple[str, Cost]:
        entry = self._formulas.get(ev.op)
        if entry is not None:
            fn, own_bytes = entry
            cost = fn(ev)
            if not own_bytes:
                cost = cost.with_bytes(*io_bytes(ev))
            return COSTED, cost
        if ev.op in self._free:
            return FREE, ZERO
        if ev.op in TRANSCENDENTAL:
            return COSTED, Cost(transcendental=sum(t.numel for t in ev.outputs[:1])).with_bytes(*io_bytes(ev))
        rule = self._generic_rule(ev.op, ev.overload)
        if rule == "view":
            return FREE, ZERO
        if rule == "pointwise":
            return COSTED, Cost(elementwise=sum(t.numel for t in ev.outputs[:1])).with_bytes(*io_bytes(ev))
        return UNSUPPORTED, ZERO

    @staticmethod
    def _generic_rule(op: str, overload: str) -> str | None:
        key = (op, overload)
        if key in _RULES:
            return _RULES[key]
        rule = None
        try:
            ns, name = op.split(".", 1)
            func = getattr(getattr(getattr(torch.ops, ns), name), overload)
            returns = func._schema.returns
            if returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns):
                rule = "view"
            elif torch.Tag.inplace_view in func.tags:      # as_strided_, transpose_, …: metadata only
                rule = "view"
            elif torch.Tag.pointwise in func.tags:
                rule = "pointwise"
        except (AttributeError, ValueError, RuntimeError):
            rule = None
        _RULES[key] = rule
        return rule


REGISTRY = Registry()
register = REGISTRY.register

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
"""

from __future__ import annotations

from typing import Callable

import torch

from ..cost import ZERO, Cost
from ..trace.events import OpEvent

Formula = Callable[[OpEvent], Cost]

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


def io_bytes(ev: OpEvent) -> tuple[int, int]:
    """Bytes read (every tensor input) and written (every tensor output) by an op."""
    return sum(t.nbytes for t in ev.inputs), sum(t.nbytes for t in ev.outputs)


class Registry:
    def __init__(self) -> None:
        self._formulas: dict[str, tuple[Formula, bool]] = {}
        self._free: set[str] = set()

    # -- building -----------------------------------------------------------
    def register(self, *names: str, own_bytes: bool = False):
        """Decorator: register ``fn(ev) -> Cost`` for op names like ``"aten.mm"``.

        The formula returns compute counts; bytes default to :func:`io_bytes` unless
        ``own_bytes`` says the formula sets them itself (e.g. a gather reads only rows).
        Registering a name twice is an error; use :meth:`override` on a copy instead.
        """
        def deco(fn: Formula) -> Formula:
            for name in names:
                if name in self._formulas or name in self._free:
                    raise ValueError(f"a formula for {name} is already registered")
                self._formulas[name] = (fn, own_bytes)
            return fn
        return deco

    def free(self, *names: str) -> None:
        for name in names:
            if name in self._formulas or name in self._free:
                raise ValueError(f"{name} is already registered")
            self._free.add(name)

    def copy(self) -> "Registry":
        new = Registry()
        new._formulas = dict(self._formulas)
        new._free = set(self._free)
        return new

    def override(self, name: str, fn: Formula | None, *, own_bytes: bool = False) -> None:
        """Replace (or add) the formula for ``name`` in this registry; ``None`` marks it free."""
        self._formulas.pop(name, None)
        self._free.discard(name)
        if fn is None:
            self._free.add(name)
        else:
            self._formulas[name] = (fn, own_bytes)

    # -- querying -----------------------------------------------------------
    def formula(self, name: str) -> Formula | None:
        entry = self._formulas.get(name)
        return entry[0] if entry else None

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

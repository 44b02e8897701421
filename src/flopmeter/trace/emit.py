"""Re-emitting a recorded module call fast: the template's events as one generated function.

A replayed call re-creates tens of events, each with nested argument structures holding
TensorRefs. Walking those structures per replay costs more than the rest of a replay, so a
template is compiled once into Python source that builds every event directly::

    def emit(R, X, C, M, S, append, OpEvent):
        append(OpEvent(C[0], C[1], (R[0], X[1], C[2]), {}, R[1], M[0], S[0], C[3], C[4]))
        ...

``R`` holds the call's new TensorRefs (one per distinct tensor snapshot the call made), ``X``
the references of its inputs and parameters now, ``C`` every other value of the template
(op names, scalars, dtypes, dictionary keys — never written into the source, so nothing of
the model is ever evaluated as code), ``M`` the module paths and ``S`` the module stacks,
remapped for this call.
"""

from __future__ import annotations

from .events import OpEvent, TensorRef


def _clone_source() -> str:
    slots = [s for s in TensorRef.__slots__ if s not in ("id", "storage")]
    lines = ["def clone(r, tid, sid, new=object.__new__, T=TensorRef):", "    n = new(T)", "    n.id = tid",
             "    n.storage = sid"]
    lines += [f"    n.{s} = r.{s}" for s in slots]
    lines.append("    return n")
    return "\n".join(lines)


_NS: dict = {"TensorRef": TensorRef}
exec(compile(_clone_source(), "<flopmeter.trace.emit.clone>", "exec"), _NS)      # noqa: S102 — our own source
clone = _NS["clone"]
"""A copy of a TensorRef with another id and storage (every slot copied, whatever they are)."""


def _has_ref(value) -> bool:
    t = type(value)
    if t is TensorRef:
        return True
    if t is tuple or t is list:
        return any(_has_ref(v) for v in value)
    if t is dict:
        return any(_has_ref(v) for v in value.values())
    return False


_FUNCTIONS: dict[str, object] = {}
_KEPT = 512          # generated functions kept across runs (a model's templates repeat from count to count)


def _function(source: str):
    """The ``emit`` function of ``source``, compiled once: the source holds only indices into
    the call's arguments (never a value), so the same source is the same function for every
    template that generates it, in this run or a later one."""
    emit = _FUNCTIONS.get(source)
    if emit is None:
        ns: dict = {}
        exec(compile(source, "<flopmeter.trace.emit>", "exec"), ns)      # noqa: S102 — our own source
        emit = ns["emit"]
        if len(_FUNCTIONS) >= _KEPT:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        _FUNCTIONS[source] = emit
    return emit


class Compiled:
    """A template's events as a generated function (see the module docstring).

    ``index(r)`` gives, for a template TensorRef, ``("R", k)`` (made by the call) or ``("X", k)``
    (an input or parameter); ``paths`` and ``stacks`` number the module paths and stacks."""

    def __init__(self, events: list[OpEvent], index):
        self.constants: list = []
        self.paths: list[str] = []
        self.stacks: list[tuple] = []
        path_no: dict[str, int] = {}
        stack_no: dict[int, int] = {}
        lines = ["def emit(R, X, C, M, S, append, OpEvent):"]
        for ev in events:
            m = path_no.get(ev.module)
            if m is None:
                m = path_no[ev.module] = len(self.paths)
                self.paths.append(ev.module)
            s = stack_no.get(id(ev.stack))
            if s is None:
                s = stack_no[id(ev.stack)] = len(self.stacks)
                self.stacks.append(ev.stack)
            parts = [self._const(ev.op), self._const(ev.overload), self._code(ev.args, index),
                     self._code(ev.kwargs, index), self._code(ev.out, index), f"M[{m}]", f"S[{s}]",
                     self._const(ev.phase), self._const(ev.sig)]
            lines.append(f"    append(OpEvent({', '.join(parts)}))")
        lines.append("    return None")
        self.emit = _function("\n".join(lines))

    def _const(self, value) -> str:
        self.constants.append(value)
        return f"C[{len(self.constants) - 1}]"

    def _code(self, value, index) -> str:
        t = type(value)
        if (t is tuple or t is list) and value and not _has_ref(value):
            return self._const(value)           # shared by every replay: a trace's events are read, never written
        if t is TensorRef:
            kind, k = index(value)
            return f"{kind}[{k}]"
        if t is tuple:
            inner = ", ".join(self._code(v, index) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if t is list:
            return "[" + ", ".join(self._code(v, index) for v in value) + "]"
        if t is dict:
            return "{" + ", ".join(f"{self._const(k)}: {self._code(v, index)}" for k, v in value.items()) + "}"
        if value is None:
            return "None"
        return self._const(value)

"""``explain(model, "layer1.0.conv1", x)``: one module's closed form next to its traced ops.

The model runs once, as for :func:`flopmeter.count`; the module's recorded inputs feed its
closed form (:mod:`flopmeter.layers`), and the closed form is compared, convention by
convention, with the costs of the aten ops that ran inside the module. Modules without a
closed form say why and still show their traced ops. The library never prints: use
``render()`` or print the object with rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .api import Options, run
from .trace.lazy import materialised
from .trace.run import normalise_input_shape
from .cost import CONVENTIONS, Cost
from .errors import NoClosedFormError
from .layers import LAYERS, Derivation, LayerCall
from .layers.standin import standin
from .report import OpRow, Report
from .render.escape import visible_text
from .render.notes import call_note

_SHOWN_OPS = 30


@dataclass
class Explanation:
    path: str
    type: str
    calls: list[LayerCall]            # the module's recorded inputs, one per call
    derivation: Derivation | None     # the closed form of its first call
    reason: str | None                # why there is no closed form
    closed: Cost | None               # the closed form summed over the calls
    own: Cost                         # traced ops that ran in the module itself
    total: Cost                       # ... and in its children
    params: int                       # numel() of the module's parameters
    ops: list[OpRow]                  # traced op rows inside the module (children included)
    convention: str

    @property
    def agrees(self) -> dict[str, bool]:
        """Convention → closed-form FLOPs equal the traced ones ({} without a closed form)."""
        if self.closed is None:
            return {}
        return {name: conv.flops(self.closed) == conv.flops(self.total) for name, conv in CONVENTIONS.items()}

    @property
    def params_agree(self) -> bool | None:
        return None if self.derivation is None else self.derivation.params == self.params

    def render(self) -> str:
        name = repr(self.path) if self.path else "the root module"
        calls = len(self.calls)
        lines = [f"explain {name} ({self.type}), called {calls} time{'s' * (calls != 1)}, FLOPs in '{self.convention}'",
                 "", "closed form"]
        if self.derivation is None:
            lines.append(f"  none: {self.reason}")
        else:
            lines += [f"  {line}" for line in self.derivation.render().splitlines()]
            if calls > 1:
                lines.append(f"  (first call shown; the comparison sums the closed form over all {calls} calls)")
        lines += ["", _ops_table(self.ops), ""]
        lines += _comparison(self)
        return visible_text("\n".join(lines))

    def __str__(self) -> str:
        return self.render()

    def __rich__(self):
        from rich.text import Text

        return Text(self.render())


def _ops_table(rows: list[OpRow]) -> str:
    shown = [r for r in rows if r.status != "free"]
    out = [f"traced aten ops: {len(shown)} costed or unsupported, {len(rows) - len(shown)} free (views, reshapes)"]
    for r in shown[:_SHOWN_OPS]:
        ev, c = r.event, r.cost
        shapes = ", ".join(map(repr, ev.inputs)) + " → " + ", ".join(map(repr, ev.outputs))
        counts = (f"MACs {c.macs:,} · dots {c.dots:,} · elementwise {c.elementwise:,}"
                  f" · transcendental {c.transcendental:,}")
        where = f" in '{ev.module}'" if ev.module else ""
        out.append(f"  {ev.op}{where}: {shapes}" + (f"\n      {counts}" if r.status == "costed" else "  UNSUPPORTED"))
    if len(shown) > _SHOWN_OPS:
        out.append(f"  … {len(shown) - _SHOWN_OPS} more (in the totals below)")
    return "\n".join(out)


def _comparison(e: Explanation) -> list[str]:
    width = 16
    lines = [f"{'':<16}{'closed form':>{width}}{'traced':>{width}}"]

    def row(label: str, closed: int | None, traced: int) -> None:
        mark = "" if closed is None else ("  ✓" if closed == traced else "  ✗ differs")
        lines.append(f"{label:<16}{'—' if closed is None else f'{closed:,}':>{width}}{traced:>{width},}{mark}")

    row("params", e.derivation.params if e.derivation else None, e.params)
    row("MACs", e.closed.macs if e.closed else None, e.total.macs)
    for name, conv in CONVENTIONS.items():
        row(f"FLOPs ({name})", conv.flops(e.closed) if e.closed else None, conv.flops(e.total))
    if e.closed is not None:
        ok = all(e.agrees.values()) and e.params_agree
        lines.append("agrees: " + ("yes, under every convention and in parameters" if ok else "no"))
    return lines


def explain(model: nn.Module, path: str, *args: Any, kwargs: dict | None = None, input_shape=None,
            options: Options | None = None) -> Explanation:
    """Run ``model`` once on the example inputs (as :func:`flopmeter.count` takes them) and
    explain the module at ``path`` ("" is the root): its closed form, if it has one, its
    traced ops, and whether the two agree under every FLOP convention."""
    options = options or Options()
    _, report = run(model, args, kwargs, input_shape, options, module_inputs=True)
    return explain_report(report, path)


def explain_report(report: Report, path: str) -> Explanation:
    """Explain the module at ``path`` from a report whose trace kept module inputs (no model)."""
    trace = report.trace
    node = report.module(path)                       # an InputError with suggestions if unknown
    info = trace.module(path)
    grad, causal = not trace.inference, report.causal
    calls = [LayerCall(a, k, grad=grad, causal=causal) for a, k in info.inputs]
    derivations: list[Derivation] = []
    fused = call_note(report, node) if not calls else ""
    reason = None if calls else (f"the module did not run as a module: its work is counted in its parent's fused "
                                 f"kernel ({fused})" if fused.startswith("fused") else
                                 "the module did not run in this forward")
    if calls:
        try:
            module = standin(trace, path)
            derivations = [LAYERS.derive(module, call) for call in calls]
        except NoClosedFormError as exc:
            reason = str(exc)
    prefix = path + "." if path else ""
    params = sum(p.numel for p in trace.params if p.kind == "param"
                 and any(n.startswith(prefix) for n in (p.name, *p.aliases)))
    rows = [r for r in report.ops if any(p == path for p, _ in r.event.stack)]
    return Explanation(
        path=path, type=info.type, calls=calls, derivation=derivations[0] if derivations else None,
        reason=reason, closed=sum((d.cost for d in derivations), Cost()) if derivations else None,
        own=node.own, total=node.total, params=params, ops=rows, convention=report.convention)


__all__ = ["Explanation", "explain", "explain_report"]

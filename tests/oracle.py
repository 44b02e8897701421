"""The closed-form oracle: a layer's closed form against the traced ops inside it."""

from __future__ import annotations

from torch import nn

import flopmeter
from flopmeter import CONVENTIONS, Cost, Options
from flopmeter.layers import derive

ARITHMETIC = ("macs", "dots", "elementwise", "transcendental")


def agree(derivation, report, differ: Cost = Cost(), why: str = "") -> None:
    """Closed form + ``differ`` == the traced total: every primitive count, every convention."""
    assert report.unsupported == {}
    expected, traced = derivation.cost + differ, report.total
    detail = f"{why}\n{derivation.render()}\n" + "\n".join(f"{r.op} {r.event.inputs} {r.cost}" for r in report.ops)
    for field in ARITHMETIC:
        assert getattr(traced, field) == getattr(expected, field), f"{field}: traced {traced} ≠ closed\n{detail}"
    for name in CONVENTIONS:
        assert traced.flops(name) == expected.flops(name), name


def check(module, *inputs, kwargs=None, options: Options | None = None, differ: Cost = Cost(), why: str = ""):
    """The module's registered closed form against its trace, and params (and buffers, where
    the closed form gives them) against the module's tensors."""
    options = options or Options()
    report = flopmeter.count(module, *inputs, kwargs=kwargs, options=options)
    d = derive(module, *inputs, kwargs=kwargs, grad=not options.inference, causal=options.causal)
    agree(d, report, differ, why)
    assert d.params == sum(p.numel() for p in module.parameters()), d.render()
    if d.has("buffers"):
        assert d.total("buffers") == sum(b.numel() for b in module.buffers())
    return d, report


def only_row(report, op: str):
    """The one op row of ``op`` in a report (an assertion error listing the ops otherwise)."""
    rows = [r for r in report.ops if r.op == op]
    assert len(rows) == 1, [r.op for r in report.ops]
    return rows[0]


class Call(nn.Module):
    """A module whose forward is one function call (the op under test)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)

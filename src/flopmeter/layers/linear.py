"""Linear layers."""

from __future__ import annotations

from math import prod

from torch import nn

from .derivation import Work
from .registry import closed_form, describe


@closed_form(nn.Linear)
def linear(m: nn.Linear, call):
    """``y = x·Wᵀ + b`` on N rows (N = every input dimension but the last): one dot product
    of length I per output element, and one bias add per output element."""
    x = call.input
    w = Work(describe(m), call.describe(), N=prod(x.shape[:-1]), I=m.in_features, O=m.out_features)
    bias = m.bias is not None
    w.count("params", "I·O + O" if bias else "I·O")
    w.count("macs", "N·I·O")
    w.count("dots", "N·O")
    if bias:
        w.count("elementwise", "N·O", note="bias add")
    return w.done()

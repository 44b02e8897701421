"""Matrix products: mm, addmm, bmm, baddbmm, mv, dot, linear (what @, matmul, einsum and
F.linear lower to). One shared helper: :func:`matmul_cost`."""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .registry import register


def matmul_cost(batch: int, m: int, k: int, n: int, bias: bool = False) -> Cost:
    """(batch × m × k) @ (k × n): batch·m·n dot products of length k, plus one add per
    output element when a bias is added."""
    outs = batch * m * n
    return Cost(macs=outs * k, dots=outs, elementwise=outs if bias else 0)


@register("aten.mm")
def mm(ev):
    a, b = ev.args[0], ev.args[1]
    m, k = a.shape
    _, n = b.shape
    return matmul_cost(1, m, k, n)


@register("aten.addmm")
def addmm(ev):
    _, a, b = ev.args[:3]
    m, k = a.shape
    _, n = b.shape
    return matmul_cost(1, m, k, n, bias=True)


@register("aten._addmm_activation")
def addmm_activation(ev):
    _, a, b = ev.args[:3]
    m, k = a.shape
    _, n = b.shape
    use_gelu = bool(ev.arg(5, "use_gelu", False))
    act = Cost(transcendental=m * n) if use_gelu else Cost(elementwise=m * n)
    return matmul_cost(1, m, k, n, bias=True) + act


@register("aten.bmm")
def bmm(ev):
    a, b = ev.args[0], ev.args[1]
    batch, m, k = a.shape
    _, _, n = b.shape
    return matmul_cost(batch, m, k, n)


@register("aten.baddbmm")
def baddbmm(ev):
    _, a, b = ev.args[:3]
    batch, m, k = a.shape
    _, _, n = b.shape
    return matmul_cost(batch, m, k, n, bias=True)


@register("aten.mv")
def mv(ev):
    a, _ = ev.args[:2]
    m, k = a.shape
    return matmul_cost(1, m, k, 1)


@register("aten.addmv")
def addmv(ev):
    _, a, _ = ev.args[:3]
    m, k = a.shape
    return matmul_cost(1, m, k, 1, bias=True)


@register("aten.dot", "aten.vdot")
def dot(ev):
    (k,) = ev.args[0].shape
    return matmul_cost(1, 1, k, 1)


@register("aten.linear")
def linear(ev):
    x, w = ev.args[:2]
    bias = ev.arg(2, "bias") is not None
    n, k = w.shape if w.ndim == 2 else (1, w.shape[0])
    rows = prod(x.shape[:-1])
    return matmul_cost(1, rows, k, n, bias=bias)

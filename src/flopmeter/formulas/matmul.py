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


def _mm(a, b, batch: int = 1, *, bias: bool = False) -> Cost:
    *_, m, k = a.shape
    n = b.shape[-1]
    return matmul_cost(batch, m, k, n, bias=bias)


@register("aten.mm")
def mm(ev):
    return _mm(ev.arg("self"), ev.arg("mat2"))


@register("aten.addmm")
def addmm(ev):
    return _mm(ev.arg("mat1"), ev.arg("mat2"), bias=True)


@register("aten._addmm_activation")
def addmm_activation(ev):
    a, b = ev.arg("mat1"), ev.arg("mat2")
    outs = a.shape[0] * b.shape[1]
    act = Cost(transcendental=outs) if ev.arg("use_gelu") else Cost(elementwise=outs)
    return _mm(a, b, bias=True) + act


@register("aten.bmm")
def bmm(ev):
    a = ev.arg("self")
    return _mm(a, ev.arg("mat2"), a.shape[0])


@register("aten.baddbmm")
def baddbmm(ev):
    a = ev.arg("batch1")
    return _mm(a, ev.arg("batch2"), a.shape[0], bias=True)


@register("aten.mv")
def mv(ev):
    m, k = ev.arg("self").shape
    return matmul_cost(1, m, k, 1)


@register("aten.addmv")
def addmv(ev):
    m, k = ev.arg("mat").shape
    return matmul_cost(1, m, k, 1, bias=True)


@register("aten.dot", "aten.vdot")
def dot(ev):
    (k,) = ev.arg("self").shape
    return matmul_cost(1, 1, k, 1)


@register("aten.linear")
def linear(ev):
    x, w = ev.arg("input"), ev.arg("weight")
    n, k = w.shape if w.ndim == 2 else (1, w.shape[0])
    return matmul_cost(1, prod(x.shape[:-1]), k, n, bias=ev.arg("bias") is not None)

"""Losses: the fused aten kernels a model called with labels runs.

``F.cross_entropy`` is ``log_softmax`` (``formulas.norm``) followed by ``nll_loss_forward``
(or ``nll_loss2d_forward`` for images); label smoothing and probability targets add
ordinary pointwise ops and sums, counted by their own rules.

Counting rules, n = loss terms (targets for NLL, input elements for the others). The
reduction over the n terms: ``none`` nothing, ``sum`` n − 1 adds, ``mean`` n − 1 adds
and one divide.

- NLL: per target, pick −x[t] (1, the negation) and multiply by the class weight w[t]
  when a weight is given (1); ``mean`` divides by the total weight, Σ w[t] (n − 1 adds;
  without a weight it is the number of targets, no arithmetic). Targets equal to
  ``ignore_index`` are counted like the others (how many there are depends on values).
  Bytes: the picked input elements, the targets and the picked weights, not the whole
  input (a gather, as ``formulas.memory`` counts one).
- MSE: difference and square, 2 per element.
- smooth L1 and Huber: difference, absolute value and comparison (3), then the dearer of
  the two branches: smooth L1's 0.5·d²/β (3), Huber's 0.5·d² (2).
- binary cross-entropy on probabilities: −(y·log x + (1 − y)·log(1 − x)): 6 per element
  (1 − y, 1 − x, two products, add, negate) and 2 logarithms; a weight multiplies (1).
- binary cross-entropy with logits: (1 − y)·x − log σ(x): 3 per element and one
  log-sigmoid (transcendental, as ``log_sigmoid_forward``); ``pos_weight`` adds 4
  ((p − 1)·y + 1 and its product with log σ(x)), a weight 1.
- soft margin: log(1 + exp(−y·x)): 3 per element (product, negate, add), exp and log.
"""

from __future__ import annotations

from ..cost import Cost
from .registry import register

NONE, MEAN, SUM = 0, 1, 2


def reduction_cost(n: int, reduction: int) -> int:
    if reduction == NONE or n == 0:
        return 0
    return n - 1 + (1 if reduction == MEAN else 0)


def nll_cost(n: int, *, weight: bool, reduction: int) -> Cost:
    picked = n + (n if weight else 0)
    total_weight = n - 1 if weight and reduction == MEAN and n else 0
    return Cost(elementwise=picked + reduction_cost(n, reduction) + total_weight)


@register("aten.nll_loss_forward", "aten.nll_loss2d_forward", own_bytes=True)
def nll_loss_forward(ev):   # → (output, total_weight)
    x, target, weight, reduction = ev.arg("self"), ev.arg("target"), ev.arg("weight"), ev.arg("reduction")
    n = target.numel
    cost = nll_cost(n, weight=weight is not None, reduction=reduction)
    read = n * x.dtype.itemsize + target.nbytes + (n * weight.dtype.itemsize if weight is not None else 0)
    return cost + Cost(bytes_read=read, bytes_written=sum(t.nbytes for t in ev.outputs))


def _loss(per_element: int, transcendental: int = 0, extra=None):
    def formula(ev):
        n = ev.arg("self").numel
        reduction = ev.arg("reduction", MEAN)
        ops = per_element + (extra(ev) if extra else 0)
        return Cost(elementwise=ops * n + reduction_cost(n, reduction), transcendental=transcendental * n)
    return formula


def _given(name: str, ops: int):
    return lambda ev: ops if ev.arg(name) is not None else 0


register("aten.mse_loss")(_loss(2))
register("aten.smooth_l1_loss")(_loss(6))
register("aten.huber_loss")(_loss(5))
register("aten.soft_margin_loss")(_loss(3, 2))
register("aten.binary_cross_entropy")(_loss(6, 2, extra=_given("weight", 1)))
register("aten.binary_cross_entropy_with_logits")(
    _loss(3, 1, extra=lambda ev: _given("weight", 1)(ev) + _given("pos_weight", 4)(ev)))

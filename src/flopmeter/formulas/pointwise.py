"""Pointwise ops that need more than the generic rule (one op per output element).

The registry covers every op PyTorch tags ``pointwise`` (add, mul, relu, comparisons, …) and
every op in its one ``TRANSCENDENTAL`` list (gelu, silu, sigmoid, tanh, exp, …). Here: ops
without that tag, and ops whose cost depends on their arguments.
"""

from __future__ import annotations

from ..cost import Cost
from .registry import register


def _out(ev) -> int:
    return ev.outputs[0].numel if ev.outputs else 0


def pow_cost(n: int, exponent) -> Cost:
    """x ** 2 and x ** 3 are multiplications; other exponents (or unknown ones, None) are
    exp(log(x)·y)."""
    if isinstance(exponent, (int, float)) and float(exponent).is_integer() and 0 <= exponent <= 4:
        return Cost(elementwise=n * max(int(exponent) - 1, 1))
    return Cost(transcendental=n)


@register("aten.pow")
def pow_(ev):
    return pow_cost(_out(ev), ev.arg("exponent"))


@register("aten.native_dropout")
def native_dropout(ev):  # draw and compare a mask (1), scale and multiply (1)
    train = ev.arg("train", True)
    return Cost(elementwise=2 * ev.arg("input").numel if train else 0)


@register("aten.hardtanh", "aten.hardtanh_", "aten.threshold", "aten.relu6", "aten.hardswish",
          "aten.hardswish_", "aten.hardsigmoid", "aten.hardsigmoid_", "aten.leaky_relu", "aten.leaky_relu_",
          "aten.prelu", "aten._prelu_kernel", "aten.clamp", "aten.clamp_", "aten.clamp_min", "aten.clamp_min_",
          "aten.clamp_max", "aten.clamp_max_", "aten.relu", "aten.relu_", "aten.where", "aten.masked_fill",
          "aten.masked_fill_", "aten.lerp", "aten.lerp_")
def simple_elementwise(ev):
    return Cost(elementwise=_out(ev))

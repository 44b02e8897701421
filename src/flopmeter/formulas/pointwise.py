"""Pointwise ops that need more than the generic rule (one op per output element).

The generic rule in the registry covers every op PyTorch tags ``pointwise`` (add, mul,
relu, gelu, sigmoid, comparisons, …). Here: ops without that tag, and ops whose cost
depends on their arguments.
"""

from __future__ import annotations

from ..cost import Cost
from .registry import register


def _out(ev) -> int:
    return ev.outputs[0].numel if ev.outputs else 0


@register("aten.pow")
def pow_(ev):
    # x ** 2 and x ** 3 are multiplications; other exponents are exp(log(x)·y)
    exponent = ev.args[1] if len(ev.args) > 1 else ev.kwargs.get("exponent")
    if isinstance(exponent, (int, float)) and float(exponent).is_integer() and 0 <= exponent <= 4:
        return Cost(elementwise=_out(ev) * max(int(exponent) - 1, 1))
    return Cost(transcendental=_out(ev))


@register("aten.native_dropout")
def native_dropout(ev):  # (input, p, train): draw and compare a mask (1), scale and multiply (1)
    train = ev.arg(2, "train", True)
    return Cost(elementwise=2 * ev.args[0].numel if train else 0)


@register("aten.hardtanh", "aten.hardtanh_", "aten.threshold", "aten.relu6", "aten.hardswish",
          "aten.hardswish_", "aten.hardsigmoid", "aten.hardsigmoid_", "aten.leaky_relu", "aten.leaky_relu_",
          "aten.prelu", "aten._prelu_kernel", "aten.clamp", "aten.clamp_", "aten.clamp_min", "aten.clamp_min_",
          "aten.clamp_max", "aten.clamp_max_", "aten.relu", "aten.relu_", "aten.where", "aten.masked_fill",
          "aten.masked_fill_", "aten.lerp", "aten.lerp_")
def simple_elementwise(ev):
    return Cost(elementwise=_out(ev))


@register("aten.gelu", "aten.gelu_", "aten.silu", "aten.silu_", "aten.mish", "aten.mish_",
          "aten.softplus", "aten.elu", "aten.elu_", "aten.selu", "aten.celu", "aten.glu",
          "aten.log_sigmoid_forward")
def transcendental_activation(ev):
    return Cost(transcendental=_out(ev))

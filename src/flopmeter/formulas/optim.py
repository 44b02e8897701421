"""Optimizer ops: the ``_foreach_*`` list ops and the fused optimizer kernels.

A ``_foreach_OP`` applies OP to every tensor of its first list: one op per element (a
transcendental one for ``sqrt``, ``exp``, …), like OP itself; copies and fills are bytes only.

The fused kernels do, per parameter element, what PyTorch's single-tensor implementation
does op by op (``torch/optim/adam.py``, ``_single_tensor_adam``, defaults: no weight decay,
no amsgrad): ``exp_avg.lerp_(grad, 1 − β1)`` (1), ``exp_avg_sq.mul_(β2)`` (1),
``.addcmul_(grad, grad, 1 − β2)`` (1), ``exp_avg_sq.sqrt()`` (1 transcendental), ``/ √bc2``
(1), ``+ eps`` (1), ``param.addcdiv_(exp_avg, denom, −lr/bc1)`` (1): 6 elementwise + 1
transcendental per element; AdamW's decoupled decay ``param.mul_(1 − lr·wd)`` adds 1, as does
Adam's ``weight_decay`` (grad + wd·param) and amsgrad's running maximum. Fused SGD: 1 per
element (``param.add_(grad, −lr)``), with momentum 2 more (``buf.mul_(μ).add_(grad)``).
The step counters are incremented by a separate ``_foreach_add_`` before the fused kernel;
the kernel's per-tensor bias corrections (a few scalar ops per parameter tensor) are not
counted.
"""

from __future__ import annotations

from ..cost import Cost
from .memory import data_movement
from .registry import REGISTRY, TRANSCENDENTAL, register

REGISTRY.free("profiler._record_function_enter", "profiler._record_function_enter_new",
              "profiler._record_function_exit")


def _list_numel(value) -> int:
    if isinstance(value, (list, tuple)):
        return sum(getattr(t, "numel", 0) for t in value)
    return getattr(value, "numel", 0)


_ELEMENTWISE = ("add", "sub", "mul", "div", "lerp", "addcmul", "addcdiv", "maximum", "minimum", "neg", "abs",
                "sign", "reciprocal", "clamp_min", "clamp_max", "pow", "sqrt", "rsqrt", "exp", "log", "norm")
_MOVES = ("copy", "zero", "fill")


def _foreach(op: str):
    transcendental = f"aten.{op}" in TRANSCENDENTAL

    def formula(ev):
        n = _list_numel(ev.arg("self"))
        if op == "norm":    # square, sum per tensor, sqrt per tensor
            count = len(ev.arg("self"))
            return Cost(elementwise=2 * n - count, transcendental=count)
        if op == "pow":
            exponent = ev.arg("exponent", None)
            if isinstance(exponent, (int, float)) and float(exponent).is_integer() and 0 <= exponent <= 4:
                return Cost(elementwise=n * max(int(exponent) - 1, 1))
            return Cost(transcendental=n)
        return Cost(transcendental=n) if transcendental else Cost(elementwise=n)
    return formula


for _op in _ELEMENTWISE:
    register(f"aten._foreach_{_op}", f"aten._foreach_{_op}_")(_foreach(_op))
for _op in _MOVES:
    register(f"aten._foreach_{_op}", f"aten._foreach_{_op}_")(data_movement)


def _fused_adam():
    def formula(ev):
        n = _list_numel(ev.arg("self"))
        extra = n if ev.arg("weight_decay", 0) else 0       # Adam's L2 term or AdamW's decoupled decay
        extra += n if ev.arg("amsgrad", False) else 0
        return Cost(elementwise=6 * n + extra, transcendental=n)
    return formula


register("aten._fused_adam", "aten._fused_adam_")(_fused_adam())
register("aten._fused_adamw", "aten._fused_adamw_")(_fused_adam())


@register("aten._fused_sgd", "aten._fused_sgd_")
def fused_sgd(ev):
    n = _list_numel(ev.arg("self"))
    momentum = ev.arg("momentum", 0)
    return Cost(elementwise=n + (2 * n if momentum else 0) + (n if ev.arg("weight_decay", 0) else 0))


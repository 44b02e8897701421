"""Normalisation (batch, layer, group, RMS) and softmax.

Counting rules, n = input elements:

- statistics (mean and variance): 4 per element (sum for the mean; subtract, square
  and sum for the variance), plus one rsqrt per normalised group (transcendental);
- normalise: 2 per element (subtract mean, multiply by 1/σ);
- affine: 1 per element for a weight, 1 for a bias.
- Inference BatchNorm folds statistics and affine into a per-channel scale and shift:
  2 per element + one rsqrt per channel. Training BatchNorm computes batch statistics:
  4n + 2n (+ 2n affine); running-statistic updates (per channel) are not counted.
- RMSNorm: square (n), mean (n − rows adds + rows divides), add eps (rows), multiply by
  1/rms (n), weight (n) + one rsqrt per row — the same as its unfused decomposition.
"""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .attention import softmax_cost
from .registry import register


def layer_norm_cost(n: int, groups: int, *, weight: bool, bias: bool) -> Cost:
    """Normalise n elements in ``groups`` groups with computed statistics (+ affine)."""
    return Cost(elementwise=4 * n + 2 * n + (n if weight else 0) + (n if bias else 0), transcendental=groups)


def batch_norm_cost(n: int, channels: int, *, training: bool, weight: bool, bias: bool) -> Cost:
    if training:
        return layer_norm_cost(n, channels, weight=weight, bias=bias)
    return Cost(elementwise=2 * n, transcendental=channels)


def rms_norm_cost(n: int, rows: int, *, weight: bool) -> Cost:
    return Cost(elementwise=3 * n + rows + (n if weight else 0), transcendental=rows)


def _bn(force_training: bool | None = None):
    def formula(ev):
        x = ev.arg("input")
        training = bool(ev.arg("training")) if force_training is None else force_training
        channels = x.shape[1] if x.ndim > 1 else 1
        return batch_norm_cost(x.numel, channels, training=training, weight=ev.arg("weight") is not None,
                               bias=ev.arg("bias") is not None)
    return formula


# native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps); the
# legit no_stats overload has no running statistics, so "training" is found by name, not position
register("aten.native_batch_norm", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_functional",
         "aten.cudnn_batch_norm", "aten.miopen_batch_norm")(_bn())
register("aten._batch_norm_with_update", "aten._batch_norm_with_update_functional")(_bn(True))
register("aten._batch_norm_no_update", "aten._native_batch_norm_legit_no_training")(_bn(False))


def _affine(ev) -> dict:
    return {"weight": ev.arg("weight") is not None, "bias": ev.arg("bias") is not None}


@register("aten.native_layer_norm")
def native_layer_norm(ev):
    x, shape = ev.arg("input"), ev.arg("normalized_shape")
    return layer_norm_cost(x.numel, x.numel // max(prod(shape), 1), **_affine(ev))


@register("aten.native_group_norm")
def native_group_norm(ev):
    x = ev.arg("input")
    return layer_norm_cost(x.numel, ev.arg("N") * ev.arg("group"), **_affine(ev))


@register("aten._fused_rms_norm")
def fused_rms_norm(ev):
    x, shape = ev.arg("input"), ev.arg("normalized_shape")
    return rms_norm_cost(x.numel, x.numel // max(prod(shape), 1), weight=ev.arg("weight") is not None)


@register("aten._softmax", "aten.softmax", "aten._safe_softmax")
def softmax(ev):
    return softmax_cost(ev.arg("self").numel)


@register("aten._log_softmax", "aten.log_softmax")
def log_softmax(ev):
    x, dim = ev.arg("self"), ev.arg("dim")
    rows = x.numel // max(x.shape[dim] if x.ndim else 1, 1)
    # max, subtract, sum, subtract (4n); n exponentials and one log per row
    return Cost(elementwise=4 * x.numel, transcendental=x.numel + rows)

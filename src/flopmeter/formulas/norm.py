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


def _bn(training_index: int | None, force_training: bool | None = None):
    def formula(ev):
        x, w, b = ev.args[:3]
        if force_training is None:
            training = bool(ev.args[training_index])
        else:
            training = force_training
        channels = x.shape[1] if x.ndim > 1 else 1
        return batch_norm_cost(x.numel, channels, training=training, weight=w is not None, bias=b is not None)
    return formula


# native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)
register("aten.native_batch_norm", "aten._native_batch_norm_legit")(_bn(5))
register("aten._native_batch_norm_legit_functional")(_bn(5))
register("aten._batch_norm_with_update", "aten._batch_norm_with_update_functional",
         "aten.cudnn_batch_norm", "aten.miopen_batch_norm")(_bn(None, True))
register("aten._batch_norm_no_update", "aten._native_batch_norm_legit_no_training")(_bn(None, False))


@register("aten.native_layer_norm")
def native_layer_norm(ev):  # (input, normalized_shape, weight, bias, eps)
    x, shape, w, b = ev.args[:4]
    return layer_norm_cost(x.numel, x.numel // max(prod(shape), 1), weight=w is not None, bias=b is not None)


@register("aten.native_group_norm")
def native_group_norm(ev):  # (input, weight, bias, N, C, HxW, group, eps)
    x, w, b, n, _c, _hw, groups = ev.args[:7]
    return layer_norm_cost(x.numel, n * groups, weight=w is not None, bias=b is not None)


@register("aten._fused_rms_norm")
def fused_rms_norm(ev):  # (input, normalized_shape, weight, eps)
    x, shape = ev.args[:2]
    return rms_norm_cost(x.numel, x.numel // max(prod(shape), 1), weight=ev.arg(2, "weight") is not None)


@register("aten._softmax", "aten.softmax", "aten._safe_softmax")
def softmax(ev):
    return softmax_cost(ev.args[0].numel)


@register("aten._log_softmax", "aten.log_softmax")
def log_softmax(ev):
    x, dim = ev.args[:2]
    rows = x.numel // max(x.shape[dim] if x.ndim else 1, 1)
    # max, subtract, sum, subtract (4n); n exponentials and one log per row
    return Cost(elementwise=4 * x.numel, transcendental=x.numel + rows)

"""Reductions and pooling.

A reduction of k elements to one takes k − 1 ops, so reducing n elements to ``out``
results takes n − out ops; a mean adds one divide per result; variance is a mean (n),
subtract and square (2n), a sum (n − out) and a divide (out), 4n in all. Max pooling
compares (window − 1) times per output, average pooling adds (window − 1) and divides
once: window ops per output. Adaptive pooling windows are summed exactly per dimension.
"""

from __future__ import annotations

from math import ceil, floor, prod

from ..cost import Cost
from .registry import register


def _n_out(ev):
    return ev.inputs[0].numel, ev.outputs[0].numel


def reduce_cost(kind: str, n: int, out: int) -> Cost:
    """Reducing n elements to ``out`` results (``kind``: reduce — sum, max, min, prod, arg*,
    any/all —, mean, var, std, norm2, logsumexp, sumsquare)."""
    folds = max(n - out, 0)
    return {
        "reduce": lambda: Cost(elementwise=folds),
        "mean": lambda: Cost(elementwise=folds + out),
        "var": lambda: Cost(elementwise=4 * n),
        "std": lambda: Cost(elementwise=4 * n, transcendental=out),
        "norm2": lambda: Cost(elementwise=2 * n - out, transcendental=out),     # square, sum, sqrt
        "sumsquare": lambda: Cost(elementwise=2 * n - out),
        "logsumexp": lambda: Cost(elementwise=3 * n - out, transcendental=n + out),
    }[kind]()


def pool_cost(out: int, window: int, *, is_max: bool) -> Cost:
    """``out`` results over windows of ``window`` elements: max compares window − 1 times,
    average adds window − 1 times and divides once."""
    return Cost(elementwise=out * (window - 1 if is_max else window))


@register("aten.sum", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.argmax", "aten.argmin",
          "aten.prod", "aten.any", "aten.all", "aten.aminmax", "aten.nansum")
def reduction(ev):
    n, out = _n_out(ev)
    if ev.op in ("aten.max", "aten.min") and len(ev.inputs) == 2:   # binary elementwise max/min
        return Cost(elementwise=out)
    return reduce_cost("reduce", n, out)


@register("aten.mean", "aten.nanmean")
def mean(ev):
    n, out = _n_out(ev)
    return reduce_cost("mean", n, out)


@register("aten.var", "aten.var_mean")
def var(ev):
    return reduce_cost("var", *_n_out(ev))


@register("aten.std", "aten.std_mean")
def std(ev):
    return reduce_cost("std", *_n_out(ev))


@register("aten.linalg_vector_norm", "aten.norm")
def vector_norm(ev):  # 2-norm: square (n), sum (n − out), sqrt (out)
    return reduce_cost("norm2", *_n_out(ev))


@register("aten.logsumexp")
def logsumexp(ev):  # max (n − out), subtract (n), exp (n), sum (n − out), log (out), add back (out)
    return reduce_cost("logsumexp", *_n_out(ev))


@register("aten.cumsum", "aten.cumprod")
def cumulative(ev):
    x, dim = ev.arg("self"), ev.arg("dim")
    n = x.numel
    return Cost(elementwise=n - n // max(x.shape[dim], 1) if x.ndim else 0)


# -- pooling ------------------------------------------------------------------

def _window_total(n_in: int, n_out: int) -> int:
    """Σ over adaptive-pool outputs of their window length along one dimension."""
    return sum(ceil((i + 1) * n_in / n_out) - floor(i * n_in / n_out) for i in range(n_out))


def _adaptive(is_max: bool):
    def formula(ev):
        x = ev.arg("self")
        y = ev.outputs[0]
        nd = len(ev.arg("output_size"))
        lead = prod(x.shape[:-nd])
        window = lead * prod(_window_total(x.shape[-nd + d], y.shape[-nd + d]) for d in range(nd))
        return Cost(elementwise=window - y.numel if is_max else window)
    return formula


register("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_avg_pool1d",
         "aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool3d")(_adaptive(False))
register("aten.adaptive_max_pool1d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d")(_adaptive(True))


def _pool(is_max: bool):
    def formula(ev):
        kernel = ev.arg("kernel_size")
        y = ev.outputs[0]
        nd = int(ev.op.rsplit("pool", 1)[1][0])      # "aten.max_pool2d…" → 2
        k = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
        window = prod(k * nd if len(k) == 1 else k)
        return pool_cost(y.numel, window, is_max=is_max)
    return formula


register("aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d", "aten.max_pool1d_with_indices",
         "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices", "aten.mkldnn_max_pool2d",
         "aten.mkldnn_max_pool3d")(_pool(True))
register("aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d")(_pool(False))

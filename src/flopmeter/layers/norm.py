"""Normalisation: BatchNorm (inference and training), LayerNorm, GroupNorm, InstanceNorm, RMSNorm.

Counting rules (the same as the aten formulas in ``formulas/norm.py``), n = input elements:
statistics 4n (sum for the mean; subtract, square, sum for the variance) and one rsqrt per
normalised group; normalising 2n (subtract the mean, multiply by 1/σ); an affine weight n,
a bias n. Inference BatchNorm folds everything into a scale and a shift per channel: 2n.
"""

from __future__ import annotations

from math import prod

from torch import nn

from ..errors import NoClosedFormError
from .derivation import Work
from .registry import closed_form, describe


def _elements(w: Work, shape) -> None:
    names = ["N", "C"] + [f"S_{i + 1}" for i in range(len(shape) - 2)]
    w.set(**dict(zip(names, shape)))
    w.let("n", "·".join(names[:len(shape)]))


def _normalise(w: Work, groups: str, *, weight: bool, bias: bool) -> None:
    w.count("elementwise", "4·n", note="mean and variance")
    w.count("elementwise", "2·n", note="subtract mean, times 1/σ")
    if weight:
        w.count("elementwise", "n", note="weight")
    if bias:
        w.count("elementwise", "n", note="bias")
    w.count("transcendental", groups, note="rsqrt per group")


@closed_form(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm(m, call):
    """Per channel C over N·∏spatial elements. Inference (running statistics): a folded
    scale and shift, 2n, and one rsqrt per channel. Training (or no running statistics):
    batch statistics, normalise and affine, and one add for ``num_batches_tracked``.
    Parameters 2C (affine); buffers 2C + 1 (running mean and variance, batch counter)."""
    x = call.input
    w = Work(describe(m), call.describe())
    _elements(w, x.shape)
    batch_stats = m.training or m.running_mean is None
    affine = m.affine
    w.count("params", "2·C" if affine else "0")
    if m.track_running_stats:
        w.count("buffers", "2·C + 1", note="running mean, variance, batch counter")
    if batch_stats:
        _normalise(w, "C", weight=affine, bias=affine)
        if m.training and m.num_batches_tracked is not None:
            w.count("elementwise", "1", note="num_batches_tracked += 1")
    else:
        w.count("elementwise", "2·n", note="scale and shift")
        w.count("transcendental", "C", note="rsqrt per channel")
    w.note("training" if m.training else "inference (eval mode)")
    return w.done()


@closed_form(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def instance_norm(m, call):
    """Statistics per sample and channel (N·C groups), normalise, affine; parameters 2C (affine)."""
    if m.track_running_stats:
        raise NoClosedFormError("no closed form for InstanceNorm with track_running_stats=True",
                                hint="the traced ops are still counted; only the closed-form comparison is missing")
    x = call.input
    w = Work(describe(m), call.describe())
    _elements(w, (1, *x.shape) if x.ndim == m._get_no_batch_dim() else x.shape)     # unbatched: N = 1
    w.count("params", "2·C" if m.affine else "0")
    _normalise(w, "N·C", weight=m.affine, bias=m.affine)
    return w.done()


@closed_form(nn.GroupNorm)
def group_norm(m, call):
    """Statistics per sample and group (N·G groups), normalise, affine; parameters 2C."""
    x = call.input
    w = Work(describe(m), call.describe(), G=m.num_groups)
    _elements(w, x.shape)
    w.count("params", "2·C" if m.affine else "0")
    _normalise(w, "N·G", weight=m.affine, bias=m.affine)
    return w.done()


def _rows(w: Work, m, x) -> None:
    k = len(m.normalized_shape)
    w.set(D=prod(m.normalized_shape), R=prod(x.shape[:-k]))
    w.let("n", "R·D")


@closed_form(nn.LayerNorm)
def layer_norm(m, call):
    """Statistics over the last dimensions (D = ∏normalized_shape elements) of each of R rows;
    parameters 2D (D without a bias)."""
    x = call.input
    w = Work(describe(m), call.describe())
    _rows(w, m, x)
    weight, bias = m.weight is not None, m.bias is not None
    w.count("params", " + ".join(["D"] * (weight + bias)) or "0")
    _normalise(w, "R", weight=weight, bias=bias)
    return w.done()


@closed_form(nn.RMSNorm)
def rms_norm(m, call):
    """x / √(mean(x²) + ε) · weight over D = ∏normalized_shape elements of each of R rows:
    square n, mean (n − R adds, R divides), + ε per row, times 1/rms n, weight n, and one
    rsqrt per row; parameters D."""
    x = call.input
    w = Work(describe(m), call.describe())
    _rows(w, m, x)
    weight = m.weight is not None
    w.count("params", "D" if weight else "0")
    w.count("elementwise", "n", note="square")
    w.count("elementwise", "(n − R) + R", note="mean")
    w.count("elementwise", "R", note="+ ε")
    w.count("elementwise", "n", note="times 1/rms")
    if weight:
        w.count("elementwise", "n", note="weight")
    w.count("transcendental", "R", note="rsqrt per row")
    return w.done()

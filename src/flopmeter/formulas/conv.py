"""Convolutions, 1/2/3-d, strided, padded, dilated, grouped and transposed.

A transposed convolution does ``C_in/g · C_out · ∏K`` MACs per *input* position."""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .registry import register


def _covered(n_in: int, n_out: int, stride: int, pad: int, dil: int, k: int) -> int:
    """Output positions of one transposed-conv dimension that receive any contribution."""
    hit = set()
    for i in range(n_in):
        base = i * stride - pad
        for j in range(k):
            o = base + j * dil
            if 0 <= o < n_out:
                hit.add(o)
    return len(hit)


def conv_cost(x_shape, w_shape, out_shape, *, transposed: bool, groups: int, bias: bool,
              stride=(), padding=(), dilation=()) -> Cost:
    n = x_shape[0]
    kernel = w_shape[2:]
    if not transposed:
        c_out, c_in_g = w_shape[0], w_shape[1]
        outs = n * c_out * prod(out_shape[2:])
        return Cost(macs=outs * c_in_g * prod(kernel), dots=outs, elementwise=outs if bias else 0)
    # weight of a transposed conv: (C_in, C_out/g, *K)
    c_in, c_out_g = w_shape[0], w_shape[1]
    c_out = c_out_g * groups
    macs = n * prod(x_shape[2:]) * c_in * c_out_g * prod(kernel)
    nd = len(kernel)
    stride, padding, dilation = (_expand(v, nd) for v in (stride, padding, dilation))
    covered = prod(_covered(x_shape[2 + d], out_shape[2 + d], stride[d], padding[d], dilation[d], kernel[d])
                   for d in range(nd))
    outs = n * c_out * prod(out_shape[2:])
    return Cost(macs=macs, dots=n * c_out * covered, elementwise=outs if bias else 0)


def _expand(v, nd):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * nd if len(v) == 1 else v


@register("aten.convolution", "aten._convolution")
def convolution(ev):
    return _conv(ev, bool(ev.arg("transposed")))


def _conv(ev, transposed: bool) -> Cost:
    """convolution, convNd and conv_transposeNd alike: their arguments have the same names."""
    return conv_cost(ev.arg("input").shape, ev.arg("weight").shape, ev.outputs[0].shape, transposed=transposed,
                     groups=ev.arg("groups", 1), bias=ev.arg("bias") is not None, stride=ev.arg("stride", 1),
                     padding=ev.arg("padding", 0), dilation=ev.arg("dilation", 1))


register("aten.conv1d", "aten.conv2d", "aten.conv3d")(lambda ev: _conv(ev, False))
register("aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d")(lambda ev: _conv(ev, True))

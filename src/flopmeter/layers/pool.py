"""Pooling: max, average, adaptive (and global = adaptive to 1). No parameters; the count is
per output element × window: max pooling compares window − 1 times, average pooling adds
window − 1 times and divides once (window ops). M = every dimension before the pooled ones."""

from __future__ import annotations

from math import prod

from torch import nn
from torch.nn.modules.utils import _ntuple

from .derivation import Work
from .registry import closed_form, describe

_DIMS = {1: (("L", ""),), 2: (("H", "_h"), ("W", "_w")), 3: (("D", "_d"), ("H", "_h"), ("W", "_w"))}
_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ND = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
       nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
       nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}


def _start(m, call):
    nd = _ND[type(m)]
    x = call.input
    w = Work(describe(m), call.describe(), M=prod(x.shape[:-nd]))
    w.set(**{f"{big}_in": x.shape[-nd + i] for i, (big, _) in enumerate(_DIMS[nd])})
    w.count("params", "0")
    return w, nd, _DIMS[nd]


@closed_form(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def pool(m, call):
    """Out = ⌊(In + 2p − d·(K − 1) − 1)/s⌋ + 1 per dimension (⌈…⌉ with ``ceil_mode``, less one
    when the last window would start in the right padding); max: M·∏Out·(∏K − 1) compares,
    average: M·∏Out·∏K adds and divides (padding and ``divisor_override`` do not change it)."""
    w, nd, dims = _start(m, call)
    tup = _ntuple(nd)
    kernel, padding = tup(m.kernel_size), tup(m.padding)
    stride = tup(m.stride if m.stride is not None else m.kernel_size)
    dilation = tup(getattr(m, "dilation", 1))
    for i, (big, sub) in enumerate(dims):
        w.set(**{f"K{sub}": kernel[i], f"s{sub}": stride[i], f"p{sub}": padding[i], f"d{sub}": dilation[i]})
        span = f"{big}_in + 2·p{sub} − d{sub}·(K{sub} − 1) − 1"
        if not m.ceil_mode:
            w.let(f"{big}_out", f"⌊({span})/s{sub}⌋ + 1")
            continue
        c = w.let(f"{big}_c", f"⌈({span})/s{sub}⌉ + 1")
        if (c - 1) * stride[i] >= w.env[f"{big}_in"] + padding[i]:
            w.let(f"{big}_out", f"{big}_c − 1", note="the last window would start in the right padding")
        else:
            w.let(f"{big}_out", f"{big}_c")
    out = "M·" + "·".join(f"{big}_out" for big, _ in dims)
    window = "·".join(f"K{sub}" for _, sub in dims)
    if isinstance(m, _MAX):
        w.count("elementwise", f"{out}·({window} − 1)", note="compares")
    else:
        w.count("elementwise", f"{out}·{window}", note="adds and a divide")
    return w.done()


@closed_form(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def adaptive_pool(m, call):
    """Output i of a dimension pools inputs [⌊i·In/Out⌋, ⌈(i + 1)·In/Out⌉); those window
    lengths add up to W = In + Out − gcd(In, Out). Average: M·∏W ops; max: M·∏W − M·∏Out."""
    w, nd, dims = _start(m, call)
    size = _ntuple(nd)(m.output_size)
    for i, (big, sub) in enumerate(dims):
        if size[i] is None:
            w.let(f"{big}_out", f"{big}_in", note="output size None keeps the input size")
        else:
            w.set(**{f"{big}_out": size[i]})
        w.let(f"W{sub}", f"{big}_in + {big}_out − gcd({big}_in, {big}_out)", note="Σ of window lengths")
    windows = "M·" + "·".join(f"W{sub}" for _, sub in dims)
    if isinstance(m, _MAX):
        w.count("elementwise", f"{windows} − M·" + "·".join(f"{big}_out" for big, _ in dims), note="compares")
    else:
        w.count("elementwise", windows, note="adds and a divide")
    return w.done()

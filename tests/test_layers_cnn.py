"""Closed forms (flopmeter.layers) against the traced ops of the module, for random layer
configurations and input shapes: Linear, convolutions, normalisation, activations, pooling,
embedding. Every convention and the parameter count must agree (tests/oracle.py)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from flopmeter import Options
from flopmeter.layers.activation import RULES

from oracle import check

small = st.integers(1, 4)
pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
              pytest.mark.filterwarnings("ignore:Implicit dimension choice")]


@given(st.integers(1, 6), st.integers(1, 6), st.booleans(), st.lists(small, min_size=0, max_size=3))
def test_linear(i, o, bias, lead):
    check(nn.Linear(i, o, bias=bias), torch.randn(*lead, i))


@st.composite
def convolutions(draw):
    nd, transposed, g = draw(st.integers(1, 3)), draw(st.booleans()), draw(st.sampled_from([1, 2, 3]))
    c_in, c_out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))       # g = c_in: depthwise
    k = [draw(st.integers(1, 3)) for _ in range(nd)]
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    d = [draw(st.integers(1, 2)) for _ in range(nd)]
    p = [draw(st.integers(0, 2)) for _ in range(nd)]
    bias, batched = draw(st.booleans()), draw(st.booleans())
    extent = [di * (ki - 1) + 1 for di, ki in zip(d, k)]
    if transposed:
        op = [draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d)]
        size = [draw(st.integers(max(1, (2 * pi - e - oi) // si + 2), 5)) for pi, e, oi, si in zip(p, extent, op, s)]
        conv = nn.ConvTranspose1d if nd == 1 else nn.ConvTranspose2d if nd == 2 else nn.ConvTranspose3d
        layer = conv(c_in, c_out, k, stride=s, padding=p, output_padding=op, groups=g, dilation=d, bias=bias)
    else:
        padding, mode = p, draw(st.sampled_from(["zeros", "replicate", "same"]))
        if mode == "same":
            padding, mode, s = "same", "zeros", [1] * nd
        size = [draw(st.integers(max(1, e - 2 * (0 if padding == "same" else pi)), 6)) for e, pi in zip(extent, p)]
        conv = nn.Conv1d if nd == 1 else nn.Conv2d if nd == 2 else nn.Conv3d
        layer = conv(c_in, c_out, k, stride=s, padding=padding, dilation=d, groups=g, bias=bias, padding_mode=mode)
    shape = ([draw(st.integers(1, 2))] if batched else []) + [c_in] + size
    return layer, torch.randn(shape)


@given(convolutions())
def test_convolution(case):
    check(*case)


NORMS = {
    "batch1d": lambda c, a, t: (nn.BatchNorm1d(c, affine=a, track_running_stats=t), 1),
    "batch2d": lambda c, a, t: (nn.BatchNorm2d(c, affine=a, track_running_stats=t), 2),
    "batch3d": lambda c, a, t: (nn.BatchNorm3d(c, affine=a, track_running_stats=t), 3),
    "instance2d": lambda c, a, t: (nn.InstanceNorm2d(c, affine=a), 2),
    "group": lambda c, a, t: (nn.GroupNorm(1 if c % 2 else 2, c, affine=a), 2),
    "layer": lambda c, a, t: (nn.LayerNorm((c, 3), elementwise_affine=a, bias=t), 1),
    "rms": lambda c, a, t: (nn.RMSNorm(3, elementwise_affine=a), 1),
}


@given(st.sampled_from(sorted(NORMS)), small, st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.integers(1, 3), st.integers(2, 3))
def test_normalisation(kind, c, affine, track, training, inference, n, size):
    layer, spatial = NORMS[kind](c, affine, track)
    layer.train(training)
    shape = [n, c] + [size] * spatial if kind != "rms" else [n, c, 3]
    if kind == "layer":
        shape = [n, c, 3]
    check(layer, torch.randn(shape), options=Options(inference=inference))


ACTIVATIONS = list(RULES) + [nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Dropout]


@given(st.sampled_from(ACTIVATIONS), st.lists(small, min_size=1, max_size=4), st.booleans(),
       st.sampled_from([None, -1, 0]), st.sampled_from([0.0, 0.5, 1.0]))
def test_activation(kind, shape, training, dim, p):
    if kind is nn.GLU:
        shape[-1] *= 2                                     # halves the last dimension
        layer = nn.GLU()
    elif kind in (nn.Softmax, nn.LogSoftmax, nn.Softmin):
        layer = kind(dim=dim)
    elif kind is nn.PReLU:
        layer = nn.PReLU(shape[1] if len(shape) > 1 else 1)     # one slope per channel
    elif kind is nn.Threshold:
        layer = nn.Threshold(0.1, 0.0)
    else:
        layer = kind(p) if kind is nn.Dropout else kind()
    check(layer.train(training), torch.randn(shape))


@st.composite
def poolings(draw):
    nd, kind = draw(st.integers(1, 3)), draw(st.sampled_from(["max", "avg", "adaptive_max", "adaptive_avg"]))
    batched = draw(st.booleans())
    lead = ([draw(st.integers(1, 2))] if batched else []) + [draw(st.integers(1, 3))]
    if kind.startswith("adaptive"):
        size = [draw(st.integers(1, 7)) for _ in range(nd)]
        out = [draw(st.one_of(st.integers(1, 8), st.none())) if nd > 1 else draw(st.integers(1, 8)) for _ in range(nd)]
        cls = {("adaptive_max", 1): nn.AdaptiveMaxPool1d, ("adaptive_max", 2): nn.AdaptiveMaxPool2d,
               ("adaptive_max", 3): nn.AdaptiveMaxPool3d, ("adaptive_avg", 1): nn.AdaptiveAvgPool1d,
               ("adaptive_avg", 2): nn.AdaptiveAvgPool2d, ("adaptive_avg", 3): nn.AdaptiveAvgPool3d}[kind, nd]
        return cls(out if nd > 1 else out[0]), torch.randn(lead + size)
    k = [draw(st.integers(1, 3)) for _ in range(nd)]
    d = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(nd)]
    p = [draw(st.integers(0, ki // 2)) for ki in k]                      # PyTorch: pad ≤ K/2
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    # max pooling: a window may reach into the padding; average pooling's shape check wants In ≥ K
    size = [draw(st.integers(max(1, di * (ki - 1) + 1 - (2 * pi if kind == "max" else 0)), 7))
            for ki, di, pi in zip(k, d, p)]
    ceil = draw(st.booleans())
    if kind == "max":
        cls = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[nd - 1]
        layer = cls(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    else:
        cls = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[nd - 1]
        layer = cls(k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=draw(st.booleans()))
    return layer, torch.randn(lead + size)


@given(poolings())
def test_pooling(case):
    check(*case)


@given(st.integers(1, 20), small, st.lists(small, min_size=1, max_size=3), st.booleans())
def test_embedding(vocab, d, shape, padding):
    layer = nn.Embedding(vocab, d, padding_idx=0 if padding else None)
    derivation, report = check(layer, torch.randint(0, vocab, shape))
    # the one cost of a lookup is bytes: those agree too
    assert (derivation.cost.bytes_read, derivation.cost.bytes_written) == \
           (report.total.bytes_read, report.total.bytes_written)

"""Activations, softmax and dropout: no MACs; a fixed number of ops per element (n = input
elements), counted by the ``all`` and ``exact`` conventions and zero under ``dot``/``mac``.
Piecewise-linear functions are elementwise ops; those that evaluate exp, log, tanh or erf
are transcendental."""

from __future__ import annotations

from torch import nn

from .derivation import Work
from .registry import closed_form, describe

E, T = "elementwise", "transcendental"

# per type: (quantity, formula in n, what it is)
RULES = {
    nn.ReLU: [(E, "n", "max(x, 0)")], nn.ReLU6: [(E, "n", "clamp to [0, 6]")],
    nn.LeakyReLU: [(E, "n", "x or a·x")], nn.PReLU: [(E, "n", "x or a·x, learned a")],
    nn.Hardtanh: [(E, "n", "clamp")], nn.Hardswish: [(E, "n", "x·relu6(x + 3)/6, one fused op")],
    nn.Hardsigmoid: [(E, "n", "relu6(x + 3)/6, one fused op")], nn.Threshold: [(E, "n", "x or a value")],
    nn.Hardshrink: [(E, "n", "x or 0")], nn.Softshrink: [(E, "n", "x ∓ λ or 0")],
    nn.Sigmoid: [(T, "n", "1/(1 + e^−x)")], nn.Tanh: [(T, "n", "tanh")], nn.GELU: [(T, "n", "erf or tanh form")],
    nn.SiLU: [(T, "n", "x·σ(x)")], nn.Mish: [(T, "n", "x·tanh(softplus(x))")], nn.ELU: [(T, "n", "exp")],
    nn.SELU: [(T, "n", "exp")], nn.CELU: [(T, "n", "exp")], nn.Softplus: [(T, "n", "log(1 + e^x)")],
    nn.LogSigmoid: [(T, "n", "log σ(x)")],
    nn.Softsign: [(E, "3·n", "|x|, 1 + |x|, divide")],
    nn.Tanhshrink: [(T, "n", "tanh"), (E, "n", "x − tanh(x)")],
    nn.GLU: [(T, "n/2", "a·σ(b): one per output element")],
}


@closed_form(*RULES)
def activation(m, call):
    """A fixed count per element, by type (listed below); PReLU has one learned slope per
    channel, or one in all."""
    w = Work(describe(m), call.describe(), n=call.input.numel)
    if isinstance(m, nn.PReLU):
        w.set(a=m.num_parameters)
        w.count("params", "a")
    else:
        w.count("params", "0")
    for quantity, formula, what in RULES[type(m)]:
        w.count(quantity, formula, note=what)
    return w.done()


def _softmax_dim(m, ndim: int) -> int:
    if m.dim is not None:
        return m.dim % max(ndim, 1)
    return 0 if ndim in (0, 1, 3) else 1          # PyTorch's legacy implicit dimension


@closed_form(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def softmax(m, call):
    """Over R rows of S elements (n = R·S): max, subtract, sum (and divide) — 4 per element —
    and one exp per element; LogSoftmax subtracts the log of the sum instead of dividing
    (one log per row); Softmin negates first (one more per element)."""
    x = call.input
    w = Work(describe(m), call.describe(), n=x.numel)
    w.count("params", "0")
    if isinstance(m, nn.Softmin):
        w.count("elementwise", "n", note="negate")
    w.count("elementwise", "4·n", note="max, subtract, sum, " + ("subtract log" if isinstance(m, nn.LogSoftmax)
                                                                else "divide"))
    w.count("transcendental", "n", note="exp")
    if isinstance(m, nn.LogSoftmax):
        w.set(S=x.shape[_softmax_dim(m, x.ndim)] if x.ndim else 1)
        w.count("transcendental", "n/S", note="log per row")
    return w.done()


@closed_form(nn.Dropout)
def dropout(m, call):
    """Training with 0 < p < 1: draw a mask (free: a random fill), scale by 1/(1 − p) and
    multiply, 2 per element; p = 1 multiplies by zeros (1 per element); eval or p = 0: nothing."""
    w = Work(describe(m), call.describe(), n=call.input.numel)
    w.count("params", "0")
    if not m.training or m.p == 0:
        w.count("elementwise", "0", note="identity in eval mode" if not m.training else "p = 0")
    else:
        w.count("elementwise", "n" if m.p == 1 else "2·n", note="times zeros" if m.p == 1 else "scale, mask")
    return w.done()

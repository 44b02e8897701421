"""Recurrent layers: the fused LSTM kernel PyTorch's CPU path calls (oneDNN), one call per
layer and direction. GRU, plain RNN and LSTM with projections run as mm/addmm and pointwise
ops and are counted op by op; this formula gives the same counts as that decomposition.

Per time step and batch row, for hidden width H, input width I and recurrent width Hh:

- MACs: the input projection 4H·I and the recurrent projection 4H·Hh (2 · 4H dot products);
- elementwise: the two biases (4H each, when present), their sum 4H, the cell update
  c' = f·c + i·g (3H) and h' = o·tanh(c') (H);
- transcendental: three sigmoid gates and one tanh gate (4H) and tanh(c') (H).
"""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .matmul import matmul_cost
from .registry import register


def lstm_cost(rows: int, inp: int, hidden: int, recurrent: int, *, bias: bool) -> Cost:
    gates = 4 * hidden
    return (matmul_cost(1, rows, inp, gates, bias=bias) + matmul_cost(1, rows, recurrent, gates, bias=bias)
            + Cost(elementwise=rows * (gates + 4 * hidden), transcendental=rows * 5 * hidden))


@register("aten.mkldnn_rnn_layer")
def mkldnn_lstm_layer(ev):
    # (input, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden_size, num_layers,
    #  has_biases, bidirectional, batch_first, train); input (T, N, I) or packed (ΣN, I)
    x, w_ih, w_hh = ev.args[:3]
    hidden = ev.args[10]
    return lstm_cost(prod(x.shape[:-1]), w_ih.shape[1], hidden, w_hh.shape[1], bias=bool(ev.args[12]))

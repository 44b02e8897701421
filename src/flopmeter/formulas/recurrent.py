"""Recurrent layers: the fused kernels (oneDNN on CPU, cuDNN, the fused CUDA cells).

Counted as PyTorch's reference cells (``aten/src/ATen/native/RNN.cpp``) do the work, so a
fused kernel and its unfused decomposition give the same numbers. Per time step, per
layer and direction, for a batch of n rows, hidden size H, G gates (RNN 1, GRU 3, LSTM 4),
layer input width I and recurrent width R (H, or the LSTM projection size P):

- input and hidden products: n·G·H dot products of length I and n·G·H of length R;
- bias adds: n·G·H each for b_ih and b_hh (when the layer has biases);
- gate arithmetic, n·H each: RNN 1 (add), ReLU-RNN 2 (add, relu); GRU 7 (2 gate adds,
  r⊙h_n, add, h − n, z⊙(h − n), add); LSTM 8 (4 for adding the two gate products,
  f⊙c, i⊙g, add, o⊙tanh(c));
- transcendental, n·H each: tanh-RNN 1, GRU 3 (2 sigmoid, tanh), LSTM 5 (3 sigmoid, 2 tanh);
- LSTM projection: n·P dot products of length H.
"""

from __future__ import annotations

from ..cost import Cost
from .matmul import matmul_cost
from .registry import register

# mode numbers shared by oneDNN and cuDNN: RNN_RELU, RNN_TANH, LSTM, GRU
MODES = {0: "rnn_relu", 1: "rnn_tanh", 2: "lstm", 3: "gru"}
GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
# (elementwise, transcendental) ops per n·H of one step, bias adds not included
GATE_OPS = {"rnn_relu": (2, 0), "rnn_tanh": (1, 1), "lstm": (8, 5), "gru": (7, 3)}


def cell_arithmetic(kind: str, n: int, hidden: int, *, bias: bool) -> Cost:
    """Everything of one step except the two gate products: bias adds and gate arithmetic."""
    ops, trans = GATE_OPS[kind]
    gates = GATES[kind] * n * hidden
    return Cost(elementwise=ops * n * hidden + (2 * gates if bias else 0), transcendental=trans * n * hidden)


def layer_cost(kind: str, rows: int, inputs: int, hidden: int, *, bias: bool, proj: int = 0) -> Cost:
    """One layer in one direction over ``rows`` = time steps × batch."""
    gates = GATES[kind] * hidden
    recurrent = proj or hidden
    cost = (matmul_cost(1, rows, inputs, gates) + matmul_cost(1, rows, recurrent, gates)
            + cell_arithmetic(kind, rows, hidden, bias=bias))
    return cost + matmul_cost(1, rows, hidden, proj) if proj else cost


@register("aten.mkldnn_rnn_layer")
def mkldnn_rnn_layer(ev):
    # one layer, one direction
    x = ev.arg("input")
    kind, hidden, bias = MODES[ev.arg("mode")], ev.arg("hidden_size"), bool(ev.arg("has_biases"))
    inputs = x.shape[-1]
    return layer_cost(kind, x.numel // inputs, inputs, hidden, bias=bias)


@register("aten._cudnn_rnn")
def cudnn_rnn(ev):
    # the whole stack
    x = ev.arg("input")
    kind, hidden, proj, layers = MODES[ev.arg("mode")], ev.arg("hidden_size"), ev.arg("proj_size"), ev.arg("num_layers")
    dropout, train, directions = ev.arg("dropout"), bool(ev.arg("train")), 2 if ev.arg("bidirectional") else 1
    bias = ev.arg("weight_stride0") >= 4   # tensors per layer and direction: w_ih, w_hh[, b_ih, b_hh][, w_hr]
    inputs = x.shape[-1]
    rows = x.numel // inputs
    out = directions * (proj or hidden)
    cost = Cost()
    for layer in range(layers):
        cost += layer_cost(kind, rows, inputs if layer == 0 else out, hidden, bias=bias, proj=proj).scaled(directions)
    if train and dropout > 0:                        # between layers: mask and scale
        cost += Cost(elementwise=2 * (layers - 1) * rows * out)
    return cost


def _fused_cell(kind: str):
    def formula(ev):
        gates = ev.arg("input_gates")
        n, hidden = gates.shape[0] if gates.ndim == 2 else 1, gates.shape[-1] // GATES[kind]
        return cell_arithmetic(kind, n, hidden, bias=ev.arg("input_bias") is not None)
    return formula


register("aten._thnn_fused_lstm_cell")(_fused_cell("lstm"))
register("aten._thnn_fused_gru_cell")(_fused_cell("gru"))

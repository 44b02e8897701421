"""Dynamically quantized recurrent layers (``quantize_dynamic`` on LSTM, GRU and their cells).

Counted as ``formulas.recurrent`` counts the float layers (PyTorch's reference cells), plus
the dynamic quantisation of every product's input when the weights are int8: each step
quantises its input row and its hidden state, 4 per element (min, max, scale, shift), as
``quantized.linear_dynamic`` does. Rows are the rows the kernel runs: time steps × batch,
or the packed rows of a packed sequence (the ``data`` overloads), never the padding.
MACs are in ``uint8×int8`` (int8 weights) or ``float32×float16`` (float16 weights).

The weights sit in packed-parameter objects (``CellParamsBase`` for a whole layer, whose
state names its kind — ``quantized_dynamic`` or ``quantized_fp16`` — and holds the packed
``w_ih`` and ``w_hh``): bytes read are the activations plus the packed weights at their
element size (``formulas.quantized.Packed``).
"""

from __future__ import annotations

from ..cost import Cost
from .quantized import Packed
from .recurrent import layer_cost
from .registry import register

INT8, FP16 = "uint8×int8", "float32×float16"


def _params(ev) -> list:
    return ev.args[3 if ev.overload.startswith("data") else 2]


def _state(obj) -> tuple[str, list[Packed]]:
    """(kind, packed weights) of a CellParamsBase: its state is ((kind, tensors, doubles, longs,
    packed), class name)."""
    state = obj.__getstate__()[0]
    kind = state[0]
    return kind, [Packed(p, weight_itemsize=2 if kind == "quantized_fp16" else None) for p in state[-1]]


def _stack_precision(ev) -> str:
    return FP16 if _state(_params(ev)[0])[0] == "quantized_fp16" else INT8


def _with_weights(ev, cost: Cost, packed: list[Packed]) -> Cost:
    read = sum(t.nbytes for t in ev.inputs) + sum(p.weight_bytes + p.bias_bytes for p in packed)
    return cost + Cost(bytes_read=read, bytes_written=sum(t.nbytes for t in ev.outputs))


def _stack(kind: str):
    def formula(ev):
        # .input(input, hx, params[], has_biases, num_layers, dropout, train, bidirectional, batch_first)
        # .data(data, batch_sizes, hx, params[], has_biases, num_layers, dropout, train, bidirectional)
        shift = 1 if ev.overload.startswith("data") else 0
        x, hx = ev.args[0], ev.args[1 + shift]
        has_biases, layers, bidirectional = ev.args[3 + shift], ev.args[4 + shift], ev.args[7 + shift]
        hidden = (hx[0] if isinstance(hx, (list, tuple)) else hx).shape[-1]
        directions = 2 if bidirectional else 1
        inputs = x.shape[-1]
        rows = x.numel // inputs
        dynamic = _stack_precision(ev) == INT8
        cost = Cost()
        for layer in range(layers):
            width = inputs if layer == 0 else directions * hidden
            quantise = Cost(elementwise=4 * rows * (width + hidden)) if dynamic else Cost()
            cost += (layer_cost(kind, rows, width, hidden, bias=bool(has_biases)) + quantise).scaled(directions)
        return _with_weights(ev, cost, [p for obj in _params(ev) for p in _state(obj)[1]])
    return formula


register("aten.quantized_lstm", own_bytes=True, precision=_stack_precision)(_stack("lstm"))
register("aten.quantized_gru", own_bytes=True, precision=_stack_precision)(_stack("gru"))


def _cell_precision(ev) -> str:
    # a float16 packed weight unpacks to float32; an int8 one to qint8
    return FP16 if Packed(ev.args[2]).weight_dtype == "float32" else INT8


def _cell(kind: str):
    def formula(ev):   # (input, hx | [hx, cx], w_ih, w_hh, b_ih, b_hh)
        x, hx = ev.args[:2]
        h = hx[0] if isinstance(hx, (list, tuple)) else hx
        rows = x.shape[0] if x.ndim == 2 else 1
        inputs, hidden = x.shape[-1], h.shape[-1]
        bias = ev.arg("bias_ih" if kind == "lstm" else "b_ih")     # the schemas name it differently
        cost = layer_cost(kind, rows, inputs, hidden, bias=bias is not None)
        fp16 = _cell_precision(ev) == FP16
        if not fp16:
            cost += Cost(elementwise=4 * rows * (inputs + hidden))
        packed = [Packed(w, weight_itemsize=2 if fp16 else None) for w in ev.args[2:4]]
        return _with_weights(ev, cost, packed)
    return formula


for _kind, _op in (("lstm", "lstm"), ("gru", "gru"), ("rnn_tanh", "rnn_tanh"), ("rnn_relu", "rnn_relu")):
    register(f"quantized.quantized_{_op}_cell_dynamic", own_bytes=True, precision=_cell_precision)(_cell(_kind))

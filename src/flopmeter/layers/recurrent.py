"""Recurrent layers and cells: per time step, per layer and direction, G gates (RNN 1,
GRU 3, LSTM 4) × (input + hidden) products, bias adds, and the gate arithmetic of PyTorch's
reference cells (the per-kind counts are in ``formulas/recurrent.py``, shared with the fused
kernels' formulas)."""

from __future__ import annotations

from torch import nn

from ..errors import NoClosedFormError
from ..formulas.recurrent import GATE_OPS, GATES
from .derivation import Work
from .registry import closed_form, describe

WHAT = {"rnn_tanh": ("add", "tanh"), "rnn_relu": ("add, relu", ""),
        "gru": ("2 gate adds, r⊙h_n, add, h − n, z⊙(h − n), add", "2 sigmoid, tanh"),
        "lstm": ("4 adds of the gate products, f⊙c, i⊙g, add, o⊙tanh(c)", "3 sigmoid, 2 tanh")}


def _kind(m) -> str:
    if isinstance(m, (nn.LSTM, nn.LSTMCell)):
        return "lstm"
    if isinstance(m, (nn.GRU, nn.GRUCell)):
        return "gru"
    return "rnn_" + m.nonlinearity


def _cell_terms(w: Work, kind: str, rows: str, bias: bool) -> None:
    ops, trans = GATE_OPS[kind]
    if bias:
        w.count("elementwise", f"2·{rows}·G·H", note="b_ih and b_hh adds")
    w.count("elementwise", f"{ops}·{rows}·H", note=WHAT[kind][0])
    if trans:
        w.count("transcendental", f"{trans}·{rows}·H", note=WHAT[kind][1])


@closed_form(nn.RNN, nn.LSTM, nn.GRU)
def recurrent(m, call):
    """T steps of N rows, L layers, D directions, hidden size H, recurrent width R (H, or the
    LSTM projection P): layer 1 reads I features, the others D·R; X = I + (L − 1)·D·R sums
    the layer input widths. Between layers, dropout in training costs 2 per element."""
    if isinstance(call.args[0], tuple):
        raise NoClosedFormError("no closed form for packed sequences",
                                hint="the traced ops are still counted; only the closed-form comparison is missing")
    x = call.input
    kind = _kind(m)
    steps, batch = (x.shape[:2][::-1] if m.batch_first else x.shape[:2]) if x.ndim == 3 else (x.shape[0], 1)
    w = Work(describe(m), call.describe(), T=steps, N=batch, I=m.input_size, H=m.hidden_size, L=m.num_layers,
             D=2 if m.bidirectional else 1, G=GATES[kind])
    proj = getattr(m, "proj_size", 0)
    if proj:
        w.set(P=proj)
    r = "P" if proj else "H"
    w.let("X", f"I + (L − 1)·D·{r}", note="input widths summed over layers")
    w.count("params", f"D·G·H·(X + L·{r})" + (" + 2·L·D·G·H" if m.bias else "")
            + (" + L·D·P·H" if proj else ""))
    w.count("macs", f"T·N·D·G·H·(X + L·{r})", note="gate products")
    w.count("dots", "2·T·N·L·D·G·H", note="gate products")
    if proj:
        w.count("macs", "T·N·L·D·H·P", note="projection")
        w.count("dots", "T·N·L·D·P", note="projection")
    _cell_terms(w, kind, "T·N·L·D", m.bias)
    if m.training and m.dropout > 0 and m.num_layers > 1:
        w.count("elementwise", f"2·(L − 1)·T·N·D·{r}", note="dropout between layers")
    return w.done()


@closed_form(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def cell(m, call):
    """One time step of N rows: G·H dot products of length I and G·H of length H per row."""
    x = call.input
    kind = _kind(m)
    w = Work(describe(m), call.describe(), N=x.shape[0] if x.ndim == 2 else 1, I=m.input_size,
             H=m.hidden_size, G=GATES[kind])
    w.count("params", "G·H·(I + H)" + (" + 2·G·H" if m.bias else ""))
    w.count("macs", "N·G·H·(I + H)")
    w.count("dots", "2·N·G·H")
    _cell_terms(w, kind, "N", m.bias)
    return w.done()

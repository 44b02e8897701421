"""Recurrent layers: the fused kernels (oneDNN's mkldnn_rnn_layer, cuDNN, the fused CUDA cells)
count the same as PyTorch's unfused decomposition; counting rules in formulas/recurrent.py."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options
from flopmeter.formulas import REGISTRY
from flopmeter.trace.events import OpEvent, TensorMeta

F32 = torch.float32
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN:UserWarning")


def _count(model, x, **kw):
    r = flopmeter.count(model, x, **kw)
    assert r.unsupported == {}
    return r


@pytest.mark.parametrize("make, x, training", [
    (lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True), (3, 2, 4), False),
    (lambda: nn.LSTM(4, 5, bias=False, batch_first=True), (2, 3, 4), False),
    (lambda: nn.LSTM(4, 5, num_layers=3, dropout=0.5), (3, 2, 4), True),
    (lambda: nn.LSTM(4, 5), (3, 4), False),                                    # unbatched
])
def test_lstm_onednn_kernel_equals_its_decomposition(make, x, training):
    model = make().train(training)
    x = torch.randn(x)
    fused = _count(model, x)
    assert "aten.mkldnn_rnn_layer" in fused.by_op()
    with torch.backends.mkldnn.flags(enabled=False):
        unfused = _count(model, x)
    assert "aten.mkldnn_rnn_layer" not in unfused.by_op()
    for field in ("macs", "dots", "elementwise", "transcendental"):
        assert getattr(fused.total, field) == getattr(unfused.total, field)


def test_lstm_closed_numbers():
    r = _count(nn.LSTM(4, 5, num_layers=2, bidirectional=True), torch.randn(3, 2, 4))
    t, n, g, h, d = 3, 2, 4, 5, 2                       # steps, batch, gates, hidden, directions
    layer0 = t * n * g * h * (4 + h)                    # input width 4
    layer1 = t * n * g * h * (d * h + h)                # input: both directions of layer 0
    assert r.macs == d * (layer0 + layer1)
    assert r.total.dots == 2 * 2 * d * t * n * g * h    # 2 products per step, layer and direction
    # biases 2·G·H, gate arithmetic 8·H and 5·H transcendental per row, step, layer and direction
    assert r.total.elementwise == 2 * d * t * n * (2 * g * h + 8 * h)
    assert r.total.transcendental == 2 * d * t * n * 5 * h


def test_gru_decomposition_has_no_unsupported_ops():
    # GRU runs unfused on CPU; its gate chunks (unsafe_split) and batch_first transpose_ are free
    r = _count(nn.GRU(4, 5, batch_first=True), torch.randn(2, 3, 4))
    t, n, h = 3, 2, 5
    assert r.macs == t * n * 3 * h * (4 + h)
    assert r.total.elementwise == t * n * (2 * 3 * h + 7 * h)
    assert r.total.transcendental == t * n * 3 * h


def _event(op, args):
    return OpEvent(op, "default", tuple(args), {}, None, "", ())


def test_cudnn_rnn_formula_counts_the_whole_stack():
    # _cudnn_rnn(input, weight[], weight_stride0, weight_buf, hx, cx, mode, hidden_size, proj_size,
    #            num_layers, batch_first, dropout, train, bidirectional, batch_sizes, dropout_state)
    t, n, i, h, p, layers = 3, 2, 4, 6, 5, 2
    x = TensorMeta((t, n, i), F32)
    ev = _event("aten._cudnn_rnn", [x, [], 5, None, None, None, 2, h, p, layers, False, 0.5, True, True, [], None])
    status, cost = REGISTRY.classify(ev)
    rows, d = t * n, 2
    per_dir = [rows * 4 * h * (i + p) + rows * h * p,            # layer 0: gates, projection
               rows * 4 * h * (d * p + p) + rows * h * p]        # layer 1: input is both directions' outputs
    assert status == "costed" and cost.macs == d * sum(per_dir)
    assert cost.dots == d * layers * rows * (2 * 4 * h + p)
    dropout = 2 * (layers - 1) * rows * d * p                     # between the layers, in training
    assert cost.elementwise == d * layers * rows * (2 * 4 * h + 8 * h) + dropout
    assert cost.transcendental == d * layers * rows * 5 * h
    lstm = nn.LSTM(i, h, num_layers=layers, bidirectional=True, proj_size=p, dropout=0.5).train()
    with torch.backends.mkldnn.flags(enabled=False):
        cpu = _count(lstm, torch.randn(t, n, i))
    assert (cpu.macs, cpu.total.dots, cpu.total.elementwise) == (cost.macs, cost.dots, cost.elementwise)


@pytest.mark.parametrize("op, gates, ops, trans", [("aten._thnn_fused_lstm_cell", 4, 8, 5),
                                                   ("aten._thnn_fused_gru_cell", 3, 7, 3)])
def test_fused_cuda_cells(op, gates, ops, trans):
    n, h = 2, 5
    g = TensorMeta((n, gates * h), F32)
    bias = TensorMeta((gates * h,), F32)
    _, cost = REGISTRY.classify(_event(op, [g, g, TensorMeta((n, h), F32), bias, bias]))
    assert cost.elementwise == n * (2 * gates * h + ops * h) and cost.transcendental == n * trans * h
    _, plain = REGISTRY.classify(_event(op, [g, g, TensorMeta((n, h), F32), None, None]))
    assert plain.elementwise == n * ops * h


def test_fake_cuda_lstm_cell_uses_the_fused_kernel_and_counts_like_cpu():
    cell = nn.LSTMCell(4, 5)
    gpu = flopmeter.count(cell, input_shape=(2, 4), options=Options(device="cuda"))
    assert "aten._thnn_fused_lstm_cell" in gpu.by_op() and gpu.unsupported == {}
    cpu = _count(cell, torch.randn(2, 4))
    assert (gpu.macs, gpu.total.dots, gpu.total.elementwise, gpu.total.transcendental) == \
           (cpu.macs, cpu.total.dots, cpu.total.elementwise, cpu.total.transcendental)

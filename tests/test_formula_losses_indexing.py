"""Losses (cross-entropy's pieces, NLL, MSE, BCE …), max-unpooling, packed sequences, sorting
and argument validation, against hand derivations. Rules in flopmeter/formulas/loss.py and
flopmeter/formulas/indexing.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import flopmeter
from oracle import Call, only_row
from flopmeter import Options
from flopmeter.formulas import FREE, REGISTRY
from flopmeter.trace.events import OpEvent, TensorMeta

from guards import assert_unchanged, snapshot

MODES = ["fake", "real"]


def count(fn, *args, mode="fake"):
    r = flopmeter.count(Call(fn), *args, options=Options(mode=mode))
    assert r.unsupported == {}
    return r


row = only_row


# -- cross-entropy and NLL ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_cross_entropy_is_log_softmax_and_nll(mode):
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, -100])
    r = count(F.cross_entropy, logits, target, mode=mode)
    n, rows = 4 * 10, 4
    log_softmax = 4 * n                          # max, subtract, sum, subtract; n exp + one log per row
    nll = 4 + (4 - 1) + 1                        # negate each picked logit; mean: 3 adds, 1 divide
    assert r.total.elementwise == log_softmax + nll
    assert r.total.transcendental == n + rows
    nll_row = row(r, "aten.nll_loss_forward")
    assert nll_row.cost.bytes_read == 4 * 4 + 4 * 8        # the 4 picked float32 logits, 4 int64 targets
    assert nll_row.cost.bytes_written == 4 + 4             # loss and total weight, two scalars


@pytest.mark.parametrize("reduction, expected", [
    ("none", 4 + 4),                        # negate, weight
    ("sum", 4 + 4 + 3),                     # + 3 adds
    ("mean", 4 + 4 + 3 + 1 + 3),            # + divide by the total weight Σ w[t] (3 adds)
])
def test_weighted_nll_loss(reduction, expected):
    logp, target, weight = torch.randn(4, 10).log_softmax(-1), torch.tensor([1, 2, 3, 4]), torch.rand(10)
    r = count(lambda x, t, w: F.nll_loss(x, t, weight=w, reduction=reduction), logp, target, weight)
    nll_row = row(r, "aten.nll_loss_forward")
    assert nll_row.cost.elementwise == expected
    assert nll_row.cost.bytes_read == 4 * 4 + 4 * 8 + 4 * 4     # picked logits, targets, picked weights


@pytest.mark.parametrize("mode", MODES)
def test_nll_loss2d_for_segmentation(mode):
    logp, target = torch.randn(2, 5, 3, 3).log_softmax(1), torch.randint(0, 5, (2, 3, 3))
    r = count(lambda x, t: F.nll_loss(x, t, reduction="none"), logp, target, mode=mode)
    nll_row = row(r, "aten.nll_loss2d_forward")
    assert nll_row.cost.elementwise == 2 * 3 * 3          # one negation per pixel
    assert nll_row.event.outputs[0].shape == (2, 3, 3)


@pytest.mark.parametrize("mode", MODES)
def test_cross_entropy_with_label_smoothing_and_probabilities_has_no_unsupported_piece(mode):
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    count(lambda x, t: F.cross_entropy(x, t, weight=torch.ones(10), label_smoothing=0.1), logits, target, mode=mode)
    count(lambda x, p: F.cross_entropy(x, p.softmax(-1)), logits, torch.randn(4, 10), mode=mode)


# -- other losses -------------------------------------------------------------------------

N = 4 * 10


@pytest.mark.parametrize("name, fn, elementwise, transcendental", [
    ("mse mean", lambda x, y: F.mse_loss(x, y), 2 * N + N, 0),                       # diff, square; mean
    ("smooth l1 sum", lambda x, y: F.smooth_l1_loss(x, y, reduction="sum"), 6 * N + N - 1, 0),
    ("huber none", lambda x, y: F.huber_loss(x, y, reduction="none"), 5 * N, 0),
    ("bce", lambda x, y: F.binary_cross_entropy(x.sigmoid(), y), 6 * N + N, N + 2 * N),   # sigmoid; 2 logs
    ("bce weighted", lambda x, y: F.binary_cross_entropy(x.sigmoid(), y, weight=y), 7 * N + N, N + 2 * N),
    ("bce logits", lambda x, y: F.binary_cross_entropy_with_logits(x, y), 3 * N + N, N),
    ("bce logits pos_weight", lambda x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.ones(10)),
     (3 + 4) * N + N, N),
    ("soft margin", lambda x, y: F.soft_margin_loss(x, y), 3 * N + N, 2 * N),
])
def test_losses(name, fn, elementwise, transcendental):
    r = count(fn, torch.randn(4, 10), torch.rand(4, 10))
    assert (r.total.elementwise, r.total.transcendental) == (elementwise, transcendental)


# -- max-unpooling ------------------------------------------------------------------------

class UnpoolAutoencoder(nn.Module):
    def __init__(self, dims: int):
        super().__init__()
        pool, unpool = (nn.MaxPool2d, nn.MaxUnpool2d) if dims == 2 else (nn.MaxPool3d, nn.MaxUnpool3d)
        self.pool, self.unpool = pool(2, return_indices=True), unpool(2)

    def forward(self, x):
        return self.unpool(*self.pool(x))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 2, 6, 6), (1, 2, 4, 6, 6)])
def test_max_unpool_moves_data_only(mode, shape):
    r = count(UnpoolAutoencoder(len(shape) - 2), torch.randn(shape), mode=mode)
    unpool = row(r, f"aten.max_unpool{len(shape) - 2}d")
    pooled = math.prod(shape) // 2 ** (len(shape) - 2)        # the 2×2(×2) pool keeps one in 4 (8)
    assert unpool.cost.macs == unpool.cost.elementwise == 0
    assert unpool.cost.bytes_read == pooled * 4 + pooled * 8                   # values and int64 indices
    assert unpool.cost.bytes_written == math.prod(shape) * 4                   # the whole zero-filled output


# -- packed sequences ---------------------------------------------------------------------

class PackedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 5, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out, batch_first=True)[0]


def test_packed_lstm_counts_the_real_rows_not_the_padding():
    model = PackedLSTM()
    x, lengths = torch.randn(3, 7, 6), torch.tensor([7, 4, 2])
    before = snapshot(model)
    r = flopmeter.count(model, x, lengths, options=Options(mode="real"))
    assert_unchanged(model, before)
    assert r.unsupported == {}
    rows = 7 + 4 + 2                                   # Σ lengths, not 3 × 7 = 21
    assert r.macs == rows * (4 * 5 * 6 + 4 * 5 * 5)   # rows · (G·H·I + G·H·H), G = 4 gates
    pack = row(r, "aten._pack_padded_sequence")
    assert pack.cost.bytes_read == rows * 6 * 4 + 3 * 8                 # the kept rows, the lengths
    assert pack.cost.bytes_written == rows * 6 * 4 + 7 * 8              # packed data, batch sizes (7 steps)
    assert row(r, "aten.sort").cost.elementwise == 3 * math.ceil(math.log2(3))   # enforce_sorted=False


def test_packed_sequence_in_fake_mode_says_to_use_real_mode():
    with pytest.raises(flopmeter.ModelForwardError, match="depends on tensor values") as info:
        flopmeter.count(PackedLSTM(), torch.randn(3, 7, 6), torch.tensor([7, 4, 2]))
    assert "mode='real'" in info.value.hint


def _event(op, args, out):
    return OpEvent(op, "default", tuple(args), {}, out, "", ())


def f32(*shape):
    return TensorMeta(tuple(shape), torch.float32)


BATCH_SIZES = [3, 3, 2, 2, 1, 1, 1]          # lengths 7, 4, 2 packed: 13 rows over 7 steps


def test_cudnn_rnn_on_packed_data_counts_the_packed_rows():
    # _cudnn_rnn(input, weight[], weight_stride0, weight_buf, hx, cx, mode, hidden_size, proj_size,
    #            num_layers, batch_first, dropout, train, bidirectional, batch_sizes, dropout_state)
    weights = [f32(20, 6), f32(20, 5), f32(20), f32(20)]
    ev = _event("aten._cudnn_rnn", [f32(13, 6), weights, 4, None, f32(1, 3, 5), f32(1, 3, 5), 2, 5, 0, 1, False,
                                    0.0, False, False, BATCH_SIZES, None],
                (f32(13, 5), f32(1, 3, 5), f32(1, 3, 5), f32(0), f32(0)))
    _, cost = REGISTRY.classify(ev)
    assert cost.macs == sum(BATCH_SIZES) * (4 * 5 * 6 + 4 * 5 * 5)


def test_mkldnn_rnn_layer_on_packed_data_counts_the_packed_rows():
    # mkldnn_rnn_layer(input, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden_size,
    #                  num_layers, has_biases, bidirectional, batch_first, train)
    ev = _event("aten.mkldnn_rnn_layer", [f32(13, 6), f32(20, 6), f32(20, 5), f32(20), f32(20), f32(3, 5),
                                          f32(3, 5), False, BATCH_SIZES, 2, 5, 1, True, False, False, False],
                (f32(13, 5), f32(3, 5), f32(3, 5), f32(0)))
    _, cost = REGISTRY.classify(ev)
    assert cost.macs == sum(BATCH_SIZES) * (4 * 5 * 6 + 4 * 5 * 5)


# -- sorting and validation ---------------------------------------------------------------

@pytest.mark.parametrize("fn, expected", [
    (lambda x: x.sort(dim=-1).values, 4 * 8 * 3),                 # 4 rows · L·⌈log₂ L⌉, L = 8
    (lambda x: x.sort(dim=0, stable=True).values, 8 * 4 * 2),     # 8 columns of length 4
    (lambda x: x.argsort(dim=-1), 4 * 8 * 3),
    (lambda x: x.topk(3).values, 4 * 8 * 2),                      # 4 rows · L·⌈log₂ k⌉
    (lambda x: x.topk(1).values, 4 * (8 - 1)),                    # at least L − 1 compares
])
def test_sort_and_topk(fn, expected):
    assert count(fn, torch.randn(4, 8)).total.elementwise == expected


def test_distribution_argument_checks_are_free():
    x = torch.randn(4, 10)
    r = count(lambda a: torch.distributions.Normal(a, a.exp()).log_prob(a), x, mode="real")
    checks = [r for r in r.ops if r.op == "aten._is_all_true"]
    assert checks and all(c.status == FREE and c.cost.is_zero for c in checks)
    assert REGISTRY.classify(_event("aten._is_any_true", [TensorMeta((4,), torch.bool)],
                                    TensorMeta((), torch.bool)))[0] == FREE

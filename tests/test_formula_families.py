"""Formula families against hand derivations: convolution variants, normalisation, pooling,
interpolation, reductions, embedding. Counting rules are in flopmeter/formulas/*.py."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flopmeter
from flopmeter import Cost, Options

from compare import compute


def count(model, *args, **kw):
    r = flopmeter.count(model, *args, **kw)
    assert r.unsupported == {}
    return r


@pytest.mark.parametrize("conv, x, out", [
    (nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 9), (2, 6, 5)),
    (nn.Conv2d(4, 8, 3, dilation=2, groups=2, bias=False), (1, 4, 9, 9), (1, 8, 5, 5)),
    (nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 7, 7), (1, 6, 7, 7)),          # depthwise
    (nn.Conv3d(2, 3, (1, 3, 3), stride=(1, 2, 2)), (1, 2, 4, 8, 8), (1, 3, 4, 3, 3)),
])
def test_convolutions(conv, x, out):
    r = count(conv, torch.randn(x))
    assert r.module("").outputs[0].shape == out
    c_in_g = conv.in_channels // conv.groups
    outs = out[0] * conv.out_channels * torch.Size(out[2:]).numel()      # N·C_out·∏Out
    k = torch.Size(conv.kernel_size).numel()
    assert r.macs == outs * c_in_g * k
    assert r.total.dots == outs
    assert r.total.elementwise == (outs if conv.bias is not None else 0)
    assert r.params.count == conv.out_channels * c_in_g * k + (conv.out_channels if conv.bias is not None else 0)


def test_transposed_conv_with_gaps_counts_only_reached_outputs():
    # stride 3 > kernel 2: of every 3 output positions, 2 receive a product, 1 only the bias
    conv = nn.ConvTranspose1d(4, 5, 2, stride=3)
    r = count(conv, torch.randn(1, 4, 6))
    l_out = (6 - 1) * 3 + 2                       # 17
    assert r.module("").outputs[0].shape == (1, 5, l_out)
    assert r.macs == 1 * 6 * 4 * 5 * 2            # N·L_in·C_in·C_out·K, per input position
    reached = 6 * 2                                # each input reaches 2 distinct outputs, no overlap
    assert r.total.dots == 5 * reached
    assert r.total.elementwise == 5 * l_out       # bias on every output
    exact = r.with_convention("exact").flops
    assert exact == 2 * r.macs - 5 * reached + 5 * l_out


def test_grouped_transposed_conv():
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False)
    r = count(conv, torch.randn(2, 4, 5, 5))
    assert r.module("").outputs[0].shape == (2, 6, 10, 10)
    assert r.macs == 2 * 5 * 5 * 4 * (6 // 2) * 3 * 3     # N·∏In·C_in·(C_out/g)·∏K


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm(training):
    bn = nn.BatchNorm2d(3).train(training)
    r = count(bn, torch.randn(2, 3, 4, 4))
    n = 2 * 3 * 4 * 4
    if training:    # statistics 4n, normalise 2n, affine 2n; + num_batches_tracked += 1
        assert r.total.elementwise == 8 * n + 1
    else:           # folded scale and shift
        assert r.total.elementwise == 2 * n
    assert r.total.transcendental == 3                 # one rsqrt per channel
    assert r.params.count == 2 * 3 and r.buffers.count == 2 * 3 + 1


def test_layer_group_rms_norm():
    x = torch.randn(2, 6, 8)
    n = x.numel()
    ln = count(nn.LayerNorm(8), x)
    assert ln.total.elementwise == 4 * n + 2 * n + 2 * n and ln.total.transcendental == 2 * 6
    ln_plain = count(nn.LayerNorm(8, elementwise_affine=False), x)
    assert ln_plain.total.elementwise == 6 * n
    gn = count(nn.GroupNorm(3, 6), x)
    assert gn.total.elementwise == 8 * n and gn.total.transcendental == 2 * 3      # N·groups rsqrt
    assert gn.params.count == 2 * 6
    rms = count(nn.RMSNorm(8), x)
    assert rms.params.count == 8
    rows = 2 * 6
    # square n, mean (n − rows adds, rows divides), + eps per row, scale n, weight n
    assert rms.total.elementwise == n + (n - rows) + rows + rows + n + n
    assert rms.total.transcendental == rows                # one rsqrt per row
    # the fused kernel's formula agrees with the decomposition counted above
    from flopmeter.formulas.norm import rms_norm_cost
    assert rms_norm_cost(n, rows, weight=True) == Cost(elementwise=rms.total.elementwise, transcendental=rows)


def test_pooling():
    x = torch.randn(1, 2, 8, 8)
    mp = count(nn.MaxPool2d(2), x)
    assert mp.total.elementwise == 2 * 4 * 4 * (2 * 2 - 1)          # (window − 1) compares per output
    ap = count(nn.AvgPool2d(3, stride=1), x)
    assert ap.total.elementwise == 2 * 6 * 6 * 3 * 3                 # window ops per output
    gap = count(nn.AdaptiveAvgPool2d(1), x)
    assert gap.total.elementwise == 2 * 8 * 8                         # (64 − 1) adds + 1 divide per channel
    # 8 → 3 adaptive windows: [0,3) [2,6) [5,8) → lengths 3 + 4 + 3 = 10 per dimension
    ad = count(nn.AdaptiveAvgPool2d(3), x)
    assert ad.total.elementwise == 2 * 10 * 10
    amax = count(nn.AdaptiveMaxPool2d(3), x)
    assert amax.total.elementwise == 2 * 10 * 10 - 2 * 3 * 3


def test_in_place_metadata_ops_are_free():
    class Restride(nn.Module):
        def forward(self, x):    # global pooling of a channels-last view ends in aten.as_strided_ (ConvNeXt, Swin)
            y = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), 1)
            return y.squeeze_(-1).squeeze_(-1).t_()

    r = count(Restride(), torch.randn(1, 8, 8, 2))
    statuses = {row.op: row.status for row in r.ops}
    assert statuses == {"aten.permute": "free", "aten.mean": "costed", "aten.as_strided_": "free",
                        "aten.squeeze_": "free", "aten.t_": "free"}
    assert r.total.elementwise == 2 * 8 * 8                  # (64 − 1) adds + 1 divide per channel


@pytest.mark.parametrize("mode, per_output", [("nearest", 0), ("bilinear", 4 + 3), ("bicubic", 16 + 15)])
def test_interpolation(mode, per_output):
    class Up(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode=mode)

    r = count(Up(), torch.randn(1, 3, 4, 4))
    assert r.total.elementwise == per_output * 3 * 8 * 8
    assert r.total.bytes_written == 3 * 8 * 8 * 4


def test_reductions_and_softmax():
    class Reduce(nn.Module):
        def forward(self, x):
            return x.sum(), x.mean(dim=1), x.amax(dim=-1), torch.softmax(x, -1), torch.log_softmax(x, -1)

    x = torch.randn(4, 5)
    r = count(Reduce(), x)
    by = r.by_op()
    assert by["aten.sum"][1].elementwise == 20 - 1                    # n − 1 adds
    assert by["aten.mean"][1].elementwise == (20 - 5) + 5              # adds, then one divide per result
    assert by["aten.amax"][1].elementwise == 20 - 4
    assert by["aten._softmax"][1] .elementwise == 4 * 20 and by["aten._softmax"][1].transcendental == 20
    assert by["aten._log_softmax"][1].transcendental == 20 + 4         # exps + one log per row


def test_embedding_is_a_gather_of_bytes():
    emb = nn.Embedding(1000, 16)
    ids = torch.randint(0, 1000, (2, 3))
    r = count(emb, ids)
    assert r.macs == 0 and r.flops_in("all") == 0
    assert r.total.bytes_read == 2 * 3 * 8 + 2 * 3 * 16 * 4          # int64 indices + picked rows
    assert r.total.bytes_written == 2 * 3 * 16 * 4


def test_training_backward_free_options_inference_false_still_counts_forward():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU())
    r = flopmeter.count(model, torch.randn(2, 4), options=Options(inference=False))
    assert r.macs == 2 * 4 * 4 and r.total.transcendental == 2 * 4


@pytest.mark.filterwarnings("ignore:TF32 acceleration")       # printed by mkldnn.flags on CPU-only builds
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_fused_kernel_matches_its_decomposition(bias):
    lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True, bias=bias).eval()
    x = torch.randn(2, 5, 8)
    fused = count(lstm, x)
    assert "aten.mkldnn_rnn_layer" in fused.by_op()
    with torch.backends.mkldnn.flags(enabled=False):          # the same LSTM as mm/addmm + pointwise ops
        decomposed = count(lstm, x)
    assert "aten.mkldnn_rnn_layer" not in decomposed.by_op()
    assert compute(fused.total) == compute(decomposed.total)
    n, t, h = 2, 5, 16
    steps = 2 * n * t                                           # two directions per layer
    assert fused.macs == steps * 4 * h * (8 + h) + steps * 4 * h * (2 * h + h)   # layer 2 reads 2H
    assert fused.total.transcendental == 2 * steps * 5 * h     # 3 sigmoid + 2 tanh per unit and step


def test_gru_counts_three_gates():
    gru = nn.GRU(8, 16, batch_first=True).eval()
    r = count(gru, torch.randn(2, 5, 8))
    assert r.macs == 2 * 5 * 3 * 16 * (8 + 16)                 # N·T·3H·(I + H)

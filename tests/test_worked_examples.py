"""SPEC.md §2: every worked example reproduced exactly, arithmetic written out."""

import torch
from torch import nn

import flopmeter
from flopmeter import Options

import models


def test_mlp_515_macs():
    r = flopmeter.count(models.mlp(), torch.randn(1, 10))
    expected = 10 * 20 + 20 * 15 + 15 * 1          # Σ I·O per bias-free Linear
    assert expected == 515
    assert r.macs == expected
    assert r.flops == 2 * expected == 1_030          # dot convention
    assert [n.total.macs for n in r.root.children if isinstance_name(n, "Linear")] == [200, 300, 15]


def isinstance_name(node, name):
    return node.type == name


def test_small_cnn_3976448_macs():
    r = flopmeter.count(models.small_cnn(), torch.randn(1, 1, 28, 28))
    conv1 = 1 * 16 * 28 * 28 * 1 * 3 * 3           # N·C_out·H·W·C_in·K·K
    conv2 = 1 * 32 * 28 * 28 * 16 * 3 * 3
    fc = 32 * 28 * 28 * 10                          # I·O
    assert (conv1, conv2, fc) == (112_896, 3_612_672, 250_880)
    assert r.macs == conv1 + conv2 + fc == 3_976_448
    assert r.flops == 2 * r.macs == 7_952_896
    assert [r.module(p).total.macs for p in ("0", "2", "5")] == [conv1, conv2, fc]


def test_self_attention_2672640_macs():
    x = torch.randn(1, 10, 256)
    r = flopmeter.count(models.SelfAttention(256, 8), x, x, x)
    n, l, d, h = 1, 10, 256, 8
    proj = n * l * d * d                            # each of values, keys, queries, fc_out
    scores = n * h * l * l * (d // h)               # q @ kᵀ
    weighted = n * h * l * l * (d // h)             # attention @ v
    assert (proj, scores) == (655_360, 25_600)
    assert r.macs == 3 * proj + scores + weighted + proj == 2_672_640
    assert r.flops == 5_345_280
    assert r.module("fc_out").total.macs == proj


def test_keras_cnn_params_208_0_2261():
    r = flopmeter.count(models.KerasCNN(), torch.randn(1, 3, 224, 224))
    assert r.module("conv").params_total == 16 * 3 * 2 * 2 + 16 == 208      # C_out·C_in·K·K + C_out
    assert r.module("pool").params_total == 0
    assert r.module("dense").params_total == 16 * 133 + 133 == 2_261
    assert r.params.count == 208 + 2_261
    # shapes: 224 → 223 (kernel 2, no padding) → 111 (pool 2)
    assert r.module("pool").outputs[0].shape == (1, 16, 111, 111)
    assert r.module("dense").total.macs == 111 * 111 * 16 * 133


def _unet_params(widths=(32, 64, 128, 256, 512), cin=1, classes=2, bn=False):
    def double(a, b):   # two 3×3 convs with bias (+ BatchNorm: 2 per channel each)
        return 9 * a * b + b + 9 * b * b + b + (4 * b if bn else 0)
    total, c = 0, cin
    for w in widths:
        total += double(c, w)
        c = w
    for w in reversed(widths[:-1]):
        total += (2 * w) * w * 2 * 2 + w        # transposed conv 2w → w, 2×2, bias
        total += double(2 * w, w)
    return total + widths[0] * classes + classes   # final 1×1 conv


def test_unet_params_7759554_and_with_bn_7765442():
    x = torch.randn(1, 1, 256, 256)
    plain = flopmeter.count(models.UNet(), x)
    with_bn = flopmeter.count(models.UNet(bn=True), x)
    assert plain.params.count == _unet_params() == 7_759_554
    assert with_bn.params.count == _unet_params(bn=True) == 7_765_442
    # BatchNorm running statistics are buffers, never parameters: 2 per channel + a counter per layer
    bn_channels = 2 * (32 + 64 + 128 + 256 + 512) + 2 * (256 + 128 + 64 + 32)
    assert with_bn.buffers.count == 2 * bn_channels + 18


def test_unet_transposed_conv_counts_per_input_position():
    r = flopmeter.count(models.UNet(), torch.randn(1, 1, 256, 256))
    # up[0]: 512 → 256 channels, 2×2 kernel, stride 2, input 16×16 (256 / 2⁴)
    n, c_in, c_out, h_in, w_in, k = 1, 512, 256, 16, 16, 2
    assert r.module("up.0").total.macs == n * h_in * w_in * c_in * c_out * k * k
    # every output position receives exactly one contribution: one dot product each
    assert r.module("up.0").total.dots == n * c_out * (2 * h_in) * (2 * w_in)


def test_exact_conv_7632_flops():
    conv = nn.Conv2d(3, 4, 3, bias=False)
    r = flopmeter.count(conv, torch.randn(1, 3, 8, 8), options=Options(convention="exact"))
    assert r.module("").outputs[0].shape == (1, 4, 6, 6)
    assert r.flops == (2 * 3 * 3 ** 2 - 1) * 4 * 6 ** 2 == 7_632    # (2·C_in·K² − 1)·C_out·H·W
    with_bias = flopmeter.count(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8), options=Options(convention="exact"))
    assert with_bias.flops == 2 * 3 * 3 ** 2 * 4 * 6 ** 2            # no "− 1" with a bias


def test_conventions_from_one_trace():
    r = flopmeter.count(models.mlp(), torch.randn(1, 10))
    relu_ops = 20 + 15                                  # one op per element of each ReLU
    assert r.flops_in("mac") == 515
    assert r.flops_in("dot") == 1_030
    assert r.flops_in("all") == 1_030 + relu_ops
    dots = 20 + 15 + 1                                 # one dot product per output element
    assert r.flops_in("exact") == 1_030 - dots + relu_ops
    assert r.with_convention("all").flops == r.flops_in("all")

"""Low-precision matmuls (fp8, int8, int4) and quantized models: MACs as for any matmul,
stated in their precision, bytes at the tensors' real element sizes. Rules in
flopmeter/formulas/lowprec.py, quantized.py and quantized_rnn.py.

The fp8 and int kernels that exist only on CUDA are counted on fake tensors with
``device='cuda'`` (no GPU needed); where PyTorch has a CPU kernel the same op is also
counted in real mode and must agree."""

import warnings

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

import flopmeter
from oracle import Call, only_row
from flopmeter import Options
from flopmeter.render.tables import header_items

from guards import assert_unchanged, snapshot

FP8 = torch.float8_e4m3fn


def count(model, *args, **options):
    r = flopmeter.count(model, *args, options=Options(**options))
    assert r.unsupported == {}
    return r


only = only_row


# -- fp8 --------------------------------------------------------------------------------

def scaled_mm(a, b, sa, sb, bias=None):
    return torch._scaled_mm(a, b, sa, sb, bias=bias, out_dtype=torch.bfloat16)


@pytest.mark.parametrize("mode, device", [("fake", "cuda"), ("fake", "cpu"), ("real", None)])
def test_scaled_mm_fp8(mode, device):
    m, k, n = 48, 80, 112
    a = torch.randn(m, k).to(FP8)
    b = torch.randn(n, k).to(FP8).t()            # column-major, as the fp8 kernels want it
    one = torch.tensor(1.0)
    r = count(Call(scaled_mm), a, b, one, one, mode=mode, device=device)
    assert r.macs == 48 * 80 * 112                    # M·K·N, like any matmul
    assert r.total.dots == 48 * 112
    assert r.total.elementwise == 48 * 112            # the scaling epilogue, one multiply per output
    assert r.macs_by_precision() == {"float8_e4m3fn": 48 * 80 * 112}
    row = only(r, "aten._scaled_mm")
    assert row.cost.bytes_read == 48 * 80 * 1 + 80 * 112 * 1 + 4 + 4     # fp8 is 1 byte; two fp32 scales
    assert row.cost.bytes_written == 48 * 112 * 2                          # bfloat16 output


def test_scaled_mm_rowwise_scales_bias_and_mixed_fp8_formats():
    m, k, n = 16, 32, 64
    a = torch.randn(m, k).to(FP8)
    b = torch.randn(n, k).to(torch.float8_e5m2).t()
    r = count(Call(scaled_mm), a, b, torch.ones(m, 1), torch.ones(1, n), torch.zeros(n, dtype=torch.bfloat16),
              device="cuda")
    assert r.macs == 16 * 32 * 64
    assert r.total.elementwise == 16 * 64 + 16 * 64          # scaling + bias add
    assert r.macs_by_precision() == {"float8_e4m3fn×float8_e5m2": 16 * 32 * 64}
    row = only(r, "aten._scaled_mm")
    assert row.cost.bytes_read == 16 * 32 + 32 * 64 + 16 * 4 + 64 * 4 + 64 * 2


# -- int8 -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, device", [("fake", "cuda"), ("real", None)])
def test_int_mm(mode, device):
    a = torch.randint(-8, 8, (32, 64), dtype=torch.int8)
    b = torch.randint(-8, 8, (64, 16), dtype=torch.int8)
    r = count(Call(torch._int_mm), a, b, mode=mode, device=device)
    assert r.macs == 32 * 64 * 16 and r.total.dots == 32 * 16 and r.total.elementwise == 0
    assert r.macs_by_precision() == {"int8": 32 * 64 * 16}
    row = only(r, "aten._int_mm")
    assert (row.cost.bytes_read, row.cost.bytes_written) == (32 * 64 + 64 * 16, 32 * 16 * 4)   # int32 result


@pytest.mark.parametrize("mode, device", [("fake", "cuda"), ("real", None)])
def test_weight_int8pack_mm(mode, device):
    x = torch.randn(3, 8, 64, dtype=torch.bfloat16).flatten(0, 1)       # M = 24 rows
    w = torch.randint(-8, 8, (32, 64), dtype=torch.int8)                 # (N, K)
    scales = torch.ones(32, dtype=torch.bfloat16)
    r = count(Call(lambda x: torch.ops.aten._weight_int8pack_mm(x, w, scales)), x, mode=mode, device=device)
    assert r.macs == 24 * 64 * 32
    assert r.total.elementwise == 24 * 32                    # per-channel scale on each output
    assert r.macs_by_precision() == {"bfloat16×int8": 24 * 64 * 32}
    row = only(r, "aten._weight_int8pack_mm")
    assert row.cost.bytes_read == 24 * 64 * 2 + 32 * 64 * 1 + 32 * 2


def test_weight_int4pack_mm_on_cuda_fake():
    m, k, n, tiles, group = 8, 256, 64, 8, 32
    x = torch.randn(m, k, dtype=torch.bfloat16)

    def int4(x):   # tinygemm layout: int32[N/8, K/(tiles·16), 32, tiles/2] holds N·K int4 values
        w = torch.empty(n // 8, k // (tiles * 16), 32, tiles // 2, dtype=torch.int32, device=x.device)
        sz = torch.empty(k // group, n, 2, dtype=torch.bfloat16, device=x.device)
        return torch.ops.aten._weight_int4pack_mm(x, w, group, sz)

    r = count(Call(int4), x, device="cuda")
    assert r.macs == 8 * 256 * 64
    assert r.total.elementwise == 2 * 64 * 256             # each weight dequantised once (scale, shift)
    assert r.macs_by_precision() == {"bfloat16×int4": 8 * 256 * 64}
    row = only(r, "aten._weight_int4pack_mm")
    assert row.cost.bytes_read == 8 * 256 * 2 + 64 * 256 // 2 + (256 // 32) * 64 * 2 * 2   # int4: half a byte


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_weight_int4pack_mm_for_cpu(mode):
    m, k, n, group = 4, 128, 32, 32
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.randint(0, 16, (n, k), dtype=torch.int32), 8)
    assert packed.dtype == torch.uint8 and packed.numel() == n * k // 2
    scales_zeros = torch.randn(k // group, n, 2, dtype=torch.bfloat16)
    x = torch.randn(m, k, dtype=torch.bfloat16)
    r = count(Call(lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group, scales_zeros)), x, mode=mode)
    assert r.macs == 4 * 128 * 32
    assert r.macs_by_precision() == {"bfloat16×int4": 4 * 128 * 32}
    assert only(r, "aten._weight_int4pack_mm_for_cpu").cost.bytes_read == 4 * 128 * 2 + 32 * 128 // 2 + 4 * 32 * 2 * 2


def test_grouped_mm_for_experts():
    # MoE: 3 experts, 40 tokens routed as 10 + 20 + 10, (K = 16) @ (16 × 8) each
    x = torch.randn(40, 16, dtype=torch.bfloat16)
    w = torch.randn(3, 16, 8, dtype=torch.bfloat16)
    offs = torch.tensor([10, 30, 40], dtype=torch.int32)
    r = count(Call(lambda x, w, o: torch._grouped_mm(x, w, o)), x, w, offs, device="cuda")
    assert r.macs == 40 * 16 * 8                # every token through its expert: total rows · K · N


# -- precision in the report and the header ------------------------------------------------

def test_mixed_model_states_the_low_precision_part():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(64, 64, bias=False)

        def forward(self, x):
            h = self.proj(x)                                          # float32
            q = torch._int_mm(h.to(torch.int8), torch.ones(64, 32, dtype=torch.int8))
            return q

    r = count(Mixed(), torch.randn(32, 64))
    assert r.macs_by_precision() == {"float32": 32 * 64 * 64, "int8": 32 * 64 * 32}
    macs = dict(header_items(r, raw=True))["MACs"]
    assert macs == f"{32 * 64 * 64 + 32 * 64 * 32:,} MACs  (of which {32 * 64 * 32:,} MACs int8)"
    float_only = count(nn.Linear(4, 4), torch.randn(2, 4))
    assert dict(header_items(float_only, raw=True))["MACs"] == f"{2 * 4 * 4:,} MACs"     # unchanged for float models


# -- dynamically quantized models ---------------------------------------------------------

def _quantize_dynamic(model, dtype=torch.qint8):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.quantize_dynamic(model, dtype=dtype)


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_dynamically_quantized_linear(mode):
    model = _quantize_dynamic(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8, bias=False)))
    x = torch.randn(4, 64)
    before = snapshot(model)
    r = count(model, x, mode=mode)
    assert_unchanged(model, before)
    assert r.macs == 4 * 64 * 32 + 4 * 32 * 8
    assert r.macs_by_precision() == {"uint8×int8": 4 * 64 * 32 + 4 * 32 * 8}   # activations quantised to uint8
    #   bias add (first only) + ReLU + quantising each layer's input (min, max, scale, shift)
    assert r.total.elementwise == 4 * 32 + 4 * 32 + 4 * (4 * 64) + 4 * (4 * 32)
    # the packed int8 weights are the model's parameters (1 byte each, frozen); biases stay float32
    assert r.params.count == r.params.frozen == 64 * 32 + 32 + 32 * 8
    assert r.params.bytes_by_dtype == {"qint8": 64 * 32 + 32 * 8, "float32": 32 * 4}
    assert r.module("0").params_total == 64 * 32 + 32
    first = r.ops[0]
    assert first.op == "quantized.linear_dynamic"
    assert first.cost.bytes_read == 4 * 64 * 4 + 32 * 64 * 1 + 32 * 4          # input, int8 weight, fp32 bias
    assert first.cost.bytes_written == 4 * 32 * 4


def test_dynamically_quantized_linear_fp16():
    model = _quantize_dynamic(nn.Sequential(nn.Linear(64, 32)), dtype=torch.float16)
    r = count(model, torch.randn(4, 64))
    assert r.macs == 4 * 64 * 32 and r.total.elementwise == 4 * 32                # bias only: nothing quantised
    assert r.macs_by_precision() == {"float32×float16": 4 * 64 * 32}
    assert r.ops[0].cost.bytes_read == 4 * 64 * 4 + 32 * 64 * 2 + 32 * 4         # float16 weight: 2 bytes
    assert r.params.bytes_by_dtype == {"float16": 64 * 32 * 2, "float32": 32 * 4}


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(10, 4)
        self.cell = nn.LSTMCell(4, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        return self.cell(y[0])[0]


@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
def test_dynamically_quantized_recurrent_layers_count_as_float_ones(mode, dtype):
    x = torch.randn(7, 3, 6)
    plain = count(Recurrent(), x)
    model = _quantize_dynamic(Recurrent(), dtype)
    r = count(model, x, mode=mode)
    assert r.macs == plain.macs
    rows = 7 * 3
    # int8 weights: each product's input (x and h) is quantised, 4 per element
    quantise = (2 * 4 * rows * (6 + 5) + 2 * 4 * rows * (10 + 5)    # LSTM, two directions, two layers
                + 4 * rows * (10 + 4) + 4 * 3 * (4 + 3))           # GRU; the cell on 3 rows
    assert r.total.elementwise - plain.total.elementwise == (quantise if dtype == torch.qint8 else 0)
    precision = "uint8×int8" if dtype == torch.qint8 else "float32×float16"
    assert r.macs_by_precision() == {precision: plain.macs}
    assert r.params.count == plain.params.count           # packed weights and biases, all found
    biases = 2 * 2 * (2 * 4 * 5) + 2 * 3 * 4 + 2 * 4 * 3  # LSTM (2 layers × 2 directions), GRU, cell: b_ih + b_hh
    weights = plain.params.count - biases
    assert r.params.bytes == weights * (1 if dtype == torch.qint8 else 2) + biases * 4


# -- statically quantized models ----------------------------------------------------------

class Static(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, groups=4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        x = self.pool(self.conv2(x))
        return self.dequant(self.fc(x.flatten(1)))


def _quantize_static(model, example, fuse=(["conv", "relu"],)):
    model.eval()
    model.qconfig = tq.get_default_qconfig("fbgemm")
    if fuse:
        tq.fuse_modules(model, list(fuse), inplace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = tq.prepare(model)
        prepared(example)
        return tq.convert(prepared)


def test_statically_quantized_model_counts_as_its_float_layers():
    x = torch.randn(2, 3, 8, 8)
    model = _quantize_static(Static(), x)
    before = snapshot(model)
    r = count(model, x, mode="real")      # Quantize reads its scale with .item(): real mode
    assert_unchanged(model, before)
    conv = 2 * 8 * 8 * 8 * 3 * 3 * 3           # N·C_out·H·W·C_in·K·K
    conv2 = 2 * 8 * 3 * 3 * (8 // 4) * 3 * 3   # grouped, stride 2: 8×8 → 3×3
    fc = 2 * 8 * 10
    assert r.macs == conv + conv2 + fc
    assert r.macs_by_precision() == {"uint8×int8": conv + conv2 + fc}
    assert r.params.count == (8 * 3 * 3 * 3 + 8) + (8 * 2 * 3 * 3 + 8) + (8 * 10 + 10)   # packed weights + biases
    n_in, conv_out, conv2_out = 2 * 3 * 8 * 8, 2 * 8 * 8 * 8, 2 * 8 * 3 * 3
    assert r.total.elementwise == (2 * n_in                             # quantize_per_tensor
                                   + 2 * conv_out                        # conv bias + fused ReLU
                                   + conv2_out                           # conv2 bias
                                   + 2 * 8 * 1 * 1 * (2 * 2 - 1)         # max pool 2×2: 3 compares per output
                                   + 2 * 10 + 2 * 2 * 10)                # fc bias; dequantize
    row = next(row for row in r.ops if row.op == "quantized.conv2d_relu")
    assert row.cost.bytes_read == n_in * 1 + 8 * 3 * 3 * 3 * 1 + 8 * 4   # quint8 input, qint8 weight, fp32 bias
    assert row.cost.bytes_written == conv_out * 1


def test_statically_quantized_model_in_fake_mode_says_to_use_real_mode():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(flopmeter.ModelForwardError, match="depends on tensor values") as info:
        flopmeter.count(_quantize_static(Static(), x), x)
    assert "mode='real'" in info.value.hint


class StaticOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv = nn.Conv2d(3, 4, 1)
        self.add, self.cat = torch.ao.nn.quantized.FloatFunctional(), torch.ao.nn.quantized.FloatFunctional()
        self.act = nn.Hardswish()

    def forward(self, x):
        y = self.conv(self.quant(x))
        y = self.add.add_relu(y, y)
        return self.dequant(self.act(self.cat.cat([y, y], 1)))


def test_quantized_add_cat_and_activation_count_as_float_ops():
    x = torch.randn(1, 3, 4, 4)
    model = _quantize_static(StaticOps(), x, fuse=())
    r = count(model, x, mode="real")
    assert {"quantized.add_relu", "quantized.cat", "quantized.hardswish"} <= set(r.by_op())
    n_in, n4, n8 = 3 * 4 * 4, 4 * 4 * 4, 8 * 4 * 4
    assert r.macs == n4 * 3                                 # 1×1 conv: C_in MACs per output
    assert r.total.elementwise == (2 * n_in + n4            # quantize; conv bias
                                   + 2 * n4 + 0             # add + ReLU; cat moves data
                                   + n8 + 2 * n8)           # hardswish; dequantize


def _quantized_input(*shape):
    return torch.quantize_per_tensor(torch.rand(*shape), 0.1, 0, torch.quint8)


def test_quantized_transposed_and_1d_convolutions():
    qnn = torch.ao.nn.quantized
    x = _quantized_input(2, 4, 5, 5)
    r = count(qnn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), x, mode="real")
    assert r.macs == 2 * 5 * 5 * 4 * (6 // 2) * 3 * 3       # N·∏In·C_in·(C_out/g)·∏K, per input position
    r1 = count(qnn.Conv1d(4, 6, 3, stride=2), _quantized_input(2, 4, 9), mode="real")
    assert r1.macs == 2 * 6 * 4 * 4 * 3                     # N·C_out·L_out·C_in·K, L_out = (9 − 3)/2 + 1
    assert r1.macs_by_precision() == {"uint8×int8": r1.macs}


def test_a_registry_copy_keeps_or_replaces_the_precision():
    from flopmeter import REGISTRY, Cost

    reg = REGISTRY.copy()
    reg.override("aten._int_mm", lambda ev: Cost(macs=1))                     # a new formula, same precision
    a, b = torch.ones(32, 64, dtype=torch.int8), torch.ones(64, 16, dtype=torch.int8)
    r = flopmeter.count(Call(torch._int_mm), a, b, options=Options(registry=reg))
    assert r.macs == 1 and r.macs_by_precision() == {"int8": 1}
    reg.override("aten._int_mm", lambda ev: Cost(macs=2), precision=lambda ev: "int4")
    assert r.macs_by_precision(reg) == {"int4": 1} and r.macs_by_precision() == {"int8": 1}

"""Memory building blocks without a trace: weights by format, budgets, the largest-batch search."""

import math

import pytest
import torch
from torch import nn

from flopmeter.errors import FlopmeterError, OptionsError
from flopmeter.memory.devices import GiB, parse_budget
from flopmeter.memory.fit import largest_fitting
from flopmeter.memory.weights import all_formats, parse_format, tensors_of_model, weight_bytes


def _matrices_only():
    # two bias-free linears (every parameter is a ≥2-D matrix) and a buffer
    m = nn.Sequential(nn.Linear(256, 512, bias=False), nn.Linear(512, 384, bias=False))
    m.register_buffer("steps", torch.zeros(3, dtype=torch.int64))
    return m


def test_cast_formats_are_params_times_bits():
    m = _matrices_only()
    params = 256 * 512 + 512 * 384
    t = tensors_of_model(m)
    f = all_formats(t)
    assert f["stored"].params == params * 4 and f["stored"].buffers == 3 * 8
    assert f["float32"].params == params * 32 // 8
    assert f["bfloat16"].params == params * 16 // 8 == f["float16"].params
    assert f["float8"].params == params * 8 // 8 == f["int8"].params
    assert f["int8"].scales == 0
    for name in f:                       # integer buffers stay as stored in every format
        assert f[name].buffers == 3 * 8


def test_int4_is_packed_with_fp16_group_scales():
    m = _matrices_only()
    params = 256 * 512 + 512 * 384
    w = weight_bytes(tensors_of_model(m), "int4")
    # rows = out features; groups of 128 along the inputs; one 2-byte scale per group
    scales = (512 * math.ceil(256 / 128) + 384 * math.ceil(512 / 128)) * 2
    assert w.scales == scales
    assert w.params == params * 4 // 8 + scales
    assert w.quantised == params
    w64 = weight_bytes(tensors_of_model(m), "int4:64")
    assert w64.params == params * 4 // 8 + (512 * 256 // 64 + 384 * 512 // 64) * 2


def test_quantised_formats_keep_vectors_and_buffers_in_16_bits():
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Flatten(), nn.Linear(16 * 3, 10))
    t = tensors_of_model(m)
    w = weight_bytes(t, "int8")
    conv_w, lin_w = 16 * 3 * 3 * 3, 10 * 48
    vectors = 16 + 2 * 16 + 10                    # conv bias, BN weight+bias, linear bias
    assert w.params == (conv_w + lin_w) * 8 // 8 + vectors * 2
    assert w.buffers == 2 * 16 * 2 + 8            # running stats in 16 bits, num_batches_tracked int64 as stored
    w4 = weight_bytes(t, "int4")
    # conv rows: 16 output channels of 27 values → ⌈27·4/8⌉ = 14 bytes and one scale each
    assert w4.params == 16 * 14 + 16 * 2 + 10 * (48 * 4 // 8) + 10 * 2 + vectors * 2


def test_tied_weights_counted_once():
    emb = nn.Embedding(100, 32)
    head = nn.Linear(32, 100, bias=False)
    head.weight = emb.weight
    m = nn.ModuleDict({"emb": emb, "head": head})
    assert weight_bytes(tensors_of_model(m), "bfloat16").params == 100 * 32 * 2


def test_format_names_and_mistakes():
    assert parse_format("bf16").name == "bfloat16"
    assert parse_format("int4").group_size == 128
    assert parse_format("int8:32").group_size == 32
    with pytest.raises(OptionsError) as e:
        parse_format("int5")
    assert "int4" in (e.value.hint or "") or "int8" in (e.value.hint or "")
    with pytest.raises(OptionsError):
        parse_format("float16:128")
    with pytest.raises(OptionsError):
        parse_format("int4:0")


def test_budgets():
    assert parse_budget("80GB").bytes == 80 * 10**9
    assert parse_budget("24GiB").bytes == 24 * 2**30
    assert parse_budget("1.5 GiB").bytes == 3 * 2**29
    # a device's budget is its datasheet memory less the reserve: 80 GiB − 2 GiB by default
    assert parse_budget("h100").bytes == 80 * GiB - 2 * GiB
    assert parse_budget("h100", reserve=0).bytes == 80 * GiB
    assert parse_budget("T4", reserve=512 * 2**20).bytes == 16 * GiB - 512 * 2**20
    with pytest.raises(OptionsError) as e:
        parse_budget("H10")
    assert "h100" in e.value.hint.lower()
    with pytest.raises(OptionsError):
        parse_budget("80 bananas")


def test_affine_search_answers_in_four_traces():
    calls = []

    def peak(b):
        calls.append(b)
        return 1_000 + 300 * b

    s = largest_fitting(peak, 10_000)
    assert s.answer == (10_000 - 1_000) // 300
    assert peak(s.answer) <= 10_000 < peak(s.answer + 1)
    assert calls[:4] == [1, 2, s.answer, s.answer + 1] and len(s.probes) == 4
    assert s.form == "1,000 + 300·x"


def test_search_when_nothing_fits_and_at_a_limit():
    assert largest_fitting(lambda b: 500 + b, 100).answer == 0
    s = largest_fitting(lambda b: 10 * b, 10**9, limit=64)
    assert s.answer == 64 and s.at_limit
    with pytest.raises(FlopmeterError):
        largest_fitting(lambda b: 7, 100)          # does not grow with the batch: no answer


def test_quadratic_and_non_affine_searches_close_their_bracket():
    quad = lambda n: 5_000 + 40 * n + 3 * n * n    # noqa: E731
    s = largest_fitting(quad, 2_000_000, variable="context", start=(128, 256, 512))
    assert quad(s.answer) <= 2_000_000 < quad(s.answer + 1)
    assert len(s.probes) <= 6
    # sizes rounded up to the allocator's 512-byte blocks: not affine, the bracket still closes
    rounded = lambda b: 512 * math.ceil((1_000 + 300 * b) / 512)    # noqa: E731
    s = largest_fitting(rounded, 100_000)
    assert rounded(s.answer) <= 100_000 < rounded(s.answer + 1)
    assert len(s.probes) <= 6
    # flat between the first two batches (a size rounded up to 4 samples): the search grows
    step = lambda b: 1_000 + 400 * math.ceil(b / 4)    # noqa: E731
    s = largest_fitting(step, 1_000 + 400 * 25)
    assert s.answer == 100 and step(100) <= 1_000 + 400 * 25 < step(101)


def test_two_regimes_a_steeper_op_takes_the_peak_past_some_length():
    # like a decoder over its context: the MLP's peak below ~26k tokens, attention's steeper parabola above
    f = lambda n: max(14_000_000 + 270 * n + n * n // 400, 12_000_000 + 200 * n + n * n // 100)   # noqa: E731
    for budget in (20_000_000, 23_000_000):
        s = largest_fitting(f, budget, variable="context", start=(8192, 16384, 32768), limit=32768)
        assert f(s.answer) <= budget < f(s.answer + 1)
        assert len(s.probes) <= 10
    assert largest_fitting(f, 30_000_000, start=(8192, 16384, 32768), limit=32768).at_limit


def test_gguf_tensor_types_as_weight_formats():
    pytest.importorskip("gguf")
    from flopmeter.memory.weights import WeightTensor, tensor_bytes

    w = WeightTensor("w", (64, 512), torch.bfloat16, "parameter")
    norm = WeightTensor("norm", (512,), torch.bfloat16, "parameter")
    # Q4_0: blocks of 32 values in 18 bytes (an fp16 scale + 16 bytes of 4-bit values), along each row
    assert tensor_bytes(w, parse_format("q4_0")) == (64 * (512 // 32) * 18, 0)
    # Q4_K: super-blocks of 256 values in 144 bytes; Q6_K: 256 in 210; Q8_0: 32 in 34
    assert tensor_bytes(w, parse_format("Q4_K")) == (64 * (512 // 256) * 144, 0)
    assert tensor_bytes(w, parse_format("q6_k")) == (64 * (512 // 256) * 210, 0)
    assert tensor_bytes(w, parse_format("q8_0")) == (64 * (512 // 32) * 34, 0)
    # a row that does not fill its last block still takes the whole block
    assert tensor_bytes(WeightTensor("w", (3, 40), torch.float16, "parameter"), parse_format("q4_0")) == (3 * 2 * 18, 0)
    assert tensor_bytes(norm, parse_format("q4_k")) == (512 * 4, 0)      # norms stay in F32, as llama.cpp writes them
    with pytest.raises(OptionsError) as e:
        parse_format("Q4_K_M")
    assert "mix of tensor types" in str(e.value) and "q4_k" in e.value.hint
    with pytest.raises(OptionsError):
        parse_format("q4_k:64")                   # block types have their own layout, no group size

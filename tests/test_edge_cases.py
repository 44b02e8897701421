"""The edge-case catalogue (tests/models.py), each with its numbers derived here."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options

import models


def test_tied_weights_counted_once():
    vocab, d, n, l = 50, 8, 2, 5
    r = flopmeter.count(models.TiedWeights(vocab, d), torch.randint(0, vocab, (n, l)))
    assert r.params.count == vocab * d                       # one V·d table, not two
    assert r.module("embed").params_total == vocab * d       # canonical owner: first name
    assert r.module("head").params_total == 0
    assert r.macs == n * l * d * vocab                        # the head's matmul; the lookup is a gather
    assert r.module("embed").total.macs == 0
    row_bytes = n * l * d * 4
    assert r.module("embed").total.bytes_written == row_bytes  # gathered rows, not the table


def test_module_called_twice_is_summed_per_call():
    r = flopmeter.count(models.CalledTwice(), torch.randn(3, 8))
    node = r.module("fc")
    assert node.calls == 2
    assert node.total.macs == 2 * 3 * 8 * 8                   # two calls of N·I·O
    assert node.total.elementwise == 2 * 3 * 8                # two bias adds
    assert r.module("").own.elementwise == 3 * 8              # the ReLU runs in the root
    assert r.params.count == 8 * 8 + 8


def test_shared_module_keeps_canonical_name():
    r = flopmeter.count(models.SharedModule(), torch.randn(2, 4))
    assert [n.path for n in r.modules()] == ["", "first"]
    assert r.module("first").calls == 2
    assert r.module("first").total.macs == 2 * 2 * 4 * 4


@pytest.mark.parametrize("causal", [False, True])
def test_functional_only_matmul_einsum_sdpa(causal):
    n, l, d, h = 2, 6, 16, 2
    r = flopmeter.count(models.FunctionalOnly(d), torch.randn(n, l, d), causal)
    x_at_w = n * l * d * d                # x @ w
    matmul = n * l * d * d                # torch.matmul(a, w)
    einsum = n * l * l * d                # nld,nmd->nlm
    hd = d // h
    sdpa = 2 * n * h * l * l * hd         # scores + weighted sum; causal counted in full
    assert r.macs == x_at_w + matmul + einsum + sdpa
    assert r.unsupported == {}
    assert r.module("").params_own == d * d


def test_sdpa_with_mask_grouped_query_and_math_backend_agree():
    n, hq, hk, l, s, e = 2, 8, 2, 5, 7, 16
    q, k, v = torch.randn(n, hq, l, e), torch.randn(n, hk, s, e), torch.randn(n, hk, s, e)
    mask = torch.ones(l, s, dtype=torch.bool)

    class GQA(nn.Module):
        def forward(self, q, k, v, mask):
            return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    fused = flopmeter.count(GQA(), q, k, v, mask)
    expected = 2 * n * hq * l * s * e           # per query head: scores + weighted sum
    assert fused.macs == expected
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):          # the unfused decomposition: same dot products
        math = flopmeter.count(GQA(), q, k, v, mask)
    assert math.macs == expected and math.unsupported == {}


def test_keyword_and_dict_inputs_dict_and_tuple_outputs():
    x, scale = torch.randn(4, 6), torch.randn(4, 3)
    r = flopmeter.count(models.KeywordInputs(), x, kwargs={"scale": scale})
    assert r.macs == 4 * 6 * 3
    assert r.total.elementwise == 4 * 3 + 4 * 3               # bias add, then * scale
    assert [t.shape for t in r.inputs] == [(4, 6), (4, 3)]

    batch = {"a": torch.randn(2, 5), "b": torch.randn(2, 3)}
    r = flopmeter.count(models.DictInOut(), batch)
    assert r.macs == 2 * 5 * 7 + 2 * 3 * 7
    assert r.module("").own.elementwise == 2 * 7              # ya + yb in the root
    assert [t.shape for t in r.module("").outputs] == [(2, 7)] * 3   # sum, pair[0], pair[1]


def test_no_parameters():
    r = flopmeter.count(models.NoParameters(), torch.randn(3, 5))
    assert r.params.count == 0 and r.buffers.count == 0
    assert r.macs == 0
    assert r.total.elementwise == 3 * 15                      # relu, * 2, + 1
    assert r.flops == 0 and r.flops_in("all") == 45


def _mha_macs(n, l, d, h):
    return 4 * n * l * d * d + 2 * n * h * l * l * (d // h)   # 4 projections + scores + weighted sum


def test_multihead_attention_fast_path_eval_no_grad():
    n, l, d, h = 2, 10, 32, 4
    mha = nn.MultiheadAttention(d, h, batch_first=True).eval()
    x = torch.randn(n, l, d)
    r = flopmeter.count(mha, x, x, x)
    assert [row.op for row in r.ops if row.status == "costed"] == ["aten._native_multi_head_attention"]
    assert r.macs == _mha_macs(n, l, d, h)
    assert r.params.count == 4 * d * d + 4 * d
    # the same module with autograd on takes the unfused path: same MACs
    slow = flopmeter.count(mha, x, x, x, options=Options(inference=False))
    assert "aten._native_multi_head_attention" not in slow.by_op()
    assert slow.macs == r.macs and slow.unsupported == {}


def test_transformer_encoder_layer_fast_path():
    n, l, d, h, ff = 2, 10, 32, 4, 64
    layer = nn.TransformerEncoderLayer(d, h, dim_feedforward=ff, batch_first=True).eval()
    r = flopmeter.count(layer, torch.randn(n, l, d))
    assert "aten._transformer_encoder_layer_fwd" in r.by_op()
    assert r.macs == _mha_macs(n, l, d, h) + 2 * n * l * d * ff   # attention + two FFN linears
    slow = flopmeter.count(layer, torch.randn(n, l, d), options=Options(inference=False))
    assert slow.macs == r.macs
    assert slow.flops_in("all") == r.flops_in("all")


def test_fake_cuda_device_needs_no_gpu():
    r = flopmeter.count(nn.Linear(3, 4), input_shape=(2, 3), options=Options(device="cuda"))
    assert r.device.startswith("cuda") and r.macs == 2 * 3 * 4   # fake CUDA needs no GPU


def test_trace_keeps_each_module_calls_inputs_positional_and_keyword():
    from flopmeter.trace import record

    x, scale = torch.randn(4, 6), torch.randn(4, 3)
    assert record(models.KeywordInputs(), (x,), {"scale": scale}).module_inputs == {}   # only when asked
    trace = record(models.KeywordInputs(), (x,), {"scale": scale}, module_inputs=True)
    (args, kwargs), = trace.module_inputs[""]
    assert [t.shape for t in args] == [(4, 6)] and kwargs["scale"].shape == (4, 3)
    twice = record(models.CalledTwice(), (torch.randn(2, 8),), None, module_inputs=True)
    assert len(twice.module_inputs["fc"]) == 2                # one entry per call

"""Closed forms against traced ops for sequence layers: multi-head attention (separate query
and key lengths, grouped-query, causal counted in full or exactly), recurrent layers and
cells, and the whole-model estimate for decoder-only transformers. Where the two differ on
purpose, the test adds the difference to the closed form and says why."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import flopmeter
from flopmeter import Cost, Options
from flopmeter.layers import attention, decoder_estimate, derive

import models
from oracle import ARITHMETIC, agree, check

small = st.integers(1, 4)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


@st.composite
def mha_calls(draw):
    h, e = draw(st.integers(1, 4)), draw(small)
    d = h * e
    self_attention, need_weights = draw(st.booleans()), draw(st.booleans())
    kdim, vdim = (d, d) if self_attention else (draw(small), draw(small))
    # dropout without weights goes through SDPA's math decomposition on CPU: see test_sdpa_dropout
    m = nn.MultiheadAttention(d, h, bias=draw(st.booleans()), batch_first=draw(st.booleans()), kdim=kdim, vdim=vdim,
                              dropout=draw(st.sampled_from([0.0, 0.5])) if need_weights else 0.0)
    m.train(draw(st.booleans()))
    n, lq = draw(st.integers(1, 2)), draw(small)
    lk = lq if self_attention else draw(small)
    batched = draw(st.booleans())
    shape = (lambda l, w: ((n, l, w) if m.batch_first else (l, n, w)) if batched else (l, w))
    q = torch.randn(shape(lq, d))
    k, v = (q, q) if self_attention else (torch.randn(shape(lk, kdim)), torch.randn(shape(lk, vdim)))
    kw = {"need_weights": need_weights, "average_attn_weights": draw(st.booleans())}
    mask_kind = draw(st.sampled_from([None, "bool", "float"]))
    if mask_kind:
        dtype = torch.bool if mask_kind == "bool" else torch.float32
        if draw(st.booleans()):
            kw["attn_mask"] = torch.zeros(lq, lk, dtype=dtype)
            kw["is_causal"] = draw(st.booleans()) and lq == lk
        if draw(st.booleans()):
            kw["key_padding_mask"] = torch.zeros((n, lk) if batched else (lk,), dtype=dtype)
    options = Options(inference=draw(st.booleans()), causal=draw(st.sampled_from(["full", "exact"])))
    return m, (q, k, v), kw, options


def _mha_difference(m, inputs, kw, options) -> tuple[Cost, str]:
    q = inputs[0]
    fast = (inputs[0] is inputs[1] is inputs[2] and q.ndim == 3 and m.batch_first and not m.training
            and options.inference and m.num_heads % 2 == 0 and m.in_proj_bias is not None
            and not any(t.is_floating_point() for k, t in kw.items() if k.endswith("mask")))
    if fast and kw.get("is_causal") and not kw["need_weights"] and "key_padding_mask" not in kw:
        n, l = q.shape[0], q.shape[1]
        full = derive(m, *inputs, kwargs=kw).cost                        # causal counted in full
        mine = derive(m, *inputs, kwargs=kw, causal=options.causal).cost
        masked = Cost(*(getattr(full, f) - getattr(mine, f) for f in ARITHMETIC))
        return masked + Cost(elementwise=n * m.num_heads * l * l), (
            "the fused fast path adds the given attn_mask to the whole score matrix and ignores the "
            "is_causal hint; the unfused path, which the closed form follows, runs a causal kernel "
            "instead: N·h·L·L mask adds more (and, counted exactly, the masked pairs too)")
    return Cost(), ""


@given(mha_calls())
def test_multihead_attention(call):
    m, inputs, kw, options = call
    differ, why = _mha_difference(m, inputs, kw, options)
    check(m, *inputs, kwargs=kw, options=options, differ=differ, why=why)


@pytest.mark.parametrize("causal", ["full", "exact"])
def test_multihead_attention_fast_path_ignores_is_causal(causal):
    n, l, d, h = 2, 5, 8, 2
    m = nn.MultiheadAttention(d, h, batch_first=True).eval()
    x = torch.randn(n, l, d)
    kw = {"attn_mask": torch.zeros(l, l, dtype=torch.bool), "is_causal": True, "need_weights": False}
    options = Options(causal=causal)
    differ, why = _mha_difference(m, (x, x, x), kw, options)
    if causal == "full":
        assert differ == Cost(elementwise=n * h * l * l)
    _, report = check(m, x, x, x, kwargs=kw, options=options, differ=differ, why=why)
    assert "aten._native_multi_head_attention" in report.by_op()


@st.composite
def gqa_blocks(draw):
    kv_heads = draw(st.integers(1, 3))
    heads, e = kv_heads * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, lq = draw(st.integers(1, 2)), draw(small)
    causal = draw(st.sampled_from([None, "full", "exact"]))
    lk = lq if causal and draw(st.booleans()) else draw(small)
    mask = causal is None and draw(st.booleans())
    config = dict(q_bias=draw(st.booleans()), kv_bias=draw(st.booleans()), out_bias=draw(st.booleans()))
    return dict(N=n, L_q=lq, L_k=lk, d=heads * e, h=heads, h_kv=kv_heads, mask=mask, causal=causal, **config)


@given(gqa_blocks())
def test_grouped_query_attention(a):
    block = models.GroupedQueryAttention(a["d"], a["h"], a["h_kv"], q_bias=a["q_bias"], kv_bias=a["kv_bias"],
                                         out_bias=a["out_bias"], causal=a["causal"] is not None)
    x, memory = torch.randn(a["N"], a["L_q"], a["d"]), torch.randn(a["N"], a["L_k"], a["d"])
    mask = torch.zeros(a["L_q"], a["L_k"]) if a["mask"] else None
    report = flopmeter.count(block, x, memory, mask, options=Options(causal=a["causal"] or "full"))
    closed = attention(**a)
    agree(closed, report)
    assert closed.params == sum(p.numel() for p in block.parameters())


def test_sdpa_dropout_runs_the_math_decomposition_on_cpu():
    n, l, s, d, h = 2, 3, 5, 8, 2
    block = models.GroupedQueryAttention(d, h, h, dropout=0.5).train()
    report = flopmeter.count(block, torch.randn(n, l, d), torch.randn(n, s, d))
    assert "aten.bernoulli_" in report.by_op()
    # PyTorch's math decomposition scales q and k by √scale (N·h·(L + S)·e multiplies) where the
    # closed form, like every fused kernel's formula, scales the N·h·L·S scores once
    e = d // h
    agree(attention(N=n, L_q=l, L_k=s, d=d, h=h, dropout=True), report,
          differ=Cost(elementwise=n * h * (l + s) * e - n * h * l * s), why="math decomposition")


@st.composite
def recurrent_calls(draw):
    kind = draw(st.sampled_from(["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]))
    i, h, bias, batched = draw(small), draw(small), draw(st.booleans()), draw(st.booleans())
    n, t = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    extra = {"nonlinearity": draw(st.sampled_from(["tanh", "relu"]))} if kind.startswith("RNN") else {}
    if kind.endswith("Cell"):
        return getattr(nn, kind)(i, h, bias=bias, **extra), torch.randn((n, i) if batched else (i,)), True
    layers, batch_first = draw(st.integers(1, 2)), draw(st.booleans())
    if kind == "LSTM" and h > 1 and draw(st.booleans()):
        extra["proj_size"] = draw(st.integers(1, h - 1))
    m = getattr(nn, kind)(i, h, num_layers=layers, bias=bias, batch_first=batch_first,
                          bidirectional=draw(st.booleans()), dropout=0.5 if layers > 1 else 0.0, **extra)
    shape = ((n, t, i) if batch_first else (t, n, i)) if batched else (t, i)
    return m.train(draw(st.booleans())), torch.randn(shape), draw(st.booleans())


@given(recurrent_calls())
def test_recurrent(call):
    m, x, inference = call
    check(m, x, options=Options(inference=inference))


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(2, 20), st.integers(1, 6),
       st.integers(1, 2))
def test_decoder_estimate_against_a_traced_decoder(layers, heads, head_width, vocab, t, n):
    d = heads * head_width
    model = models.TinyDecoder(vocab, d, layers, heads).eval()
    est = decoder_estimate(layers=layers, d_model=d, vocab=vocab, context=t)
    r = flopmeter.count(model, torch.randint(0, vocab, (n, t)), options=Options(causal="exact"))
    # parameters: the estimate leaves out the LayerNorms, 2·d each, two per block and a final one
    assert r.params.count == est.params + 2 * d * (2 * layers + 1)
    # per token, causal attention counted exactly sees (t + 1)/2 keys on average, not t/2:
    # L·d MACs per token more than the estimate's L·n_ctx·d
    assert r.macs == n * t * (est.cost.macs + layers * d)
    assert r.flops == n * t * (est.step("FLOPs_per_token").value + 2 * layers * d)

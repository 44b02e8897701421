"""Hugging Face models built from small configs (no hub access), counted on fake tensors:
closed-form MACs derived from the architecture, zero unsupported ops, fake equal to real."""

import pytest
import torch

import flopmeter
from flopmeter import Options

transformers = pytest.importorskip("transformers")

N, L, V = 2, 16, 100


def _ids():
    return torch.randint(0, V, (N, L))


def _padding_mask():
    mask = torch.ones(N, L, dtype=torch.long)
    mask[1, 10:] = 0
    return mask


def _count_both(model, ids, **kw):
    fake = flopmeter.count(model, ids, **kw)
    real = flopmeter.count(model, ids, **kw, options=Options(mode="real"))
    assert fake.unsupported == real.unsupported == {}
    return fake, real


def gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=V, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval(), cfg


def test_gpt2_closed_form():
    model, cfg = gpt2()
    d, layers = cfg.n_embd, cfg.n_layer
    per_layer = (N * L * d * 3 * d          # c_attn: q, k, v
                 + 2 * N * L * L * d         # scores and weighted sum over all heads (h·hd = d)
                 + N * L * d * d             # attention c_proj
                 + 2 * N * L * d * 4 * d)    # mlp c_fc and c_proj
    lm_head = N * L * d * V                  # tied to the token embedding
    fake, real = _count_both(model, _ids())
    assert fake.macs == layers * per_layer + lm_head
    assert fake.total == real.total
    # parameters: embeddings (tied head counted once) + per layer 12·d² + 13·d + final LayerNorm
    assert fake.params.count == V * d + cfg.n_positions * d + layers * (12 * d * d + 13 * d) + 2 * d


def test_bert_closed_form_with_padding_mask():
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=V, max_position_embeddings=32)
    model = transformers.BertModel(cfg).eval()
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = 4 * N * L * d * d + 2 * N * L * L * d + 2 * N * L * d * ff
    pooler = N * d * d                        # dense layer on the first token only
    fake, real = _count_both(model, _ids())
    assert fake.macs == layers * per_layer + pooler
    assert fake.total == real.total
    # With a padding mask, real-valued HF code also asks `mask.all()` (and `.item()`) to decide
    # whether it may drop the mask; with fake tensors it skips that data-dependent check.
    fake, real = _count_both(model, _ids(), kwargs={"attention_mask": _padding_mask()})
    assert fake.macs == real.macs == layers * per_layer + pooler
    extra = {k: v for k, v in real.by_op().items() if k not in fake.by_op()}
    assert set(extra) == {"aten.all", "aten._local_scalar_dense"}
    assert real.total.elementwise - fake.total.elementwise == extra["aten.all"][1].elementwise == N * L - 1


def test_llama_grouped_query_closed_form():
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                   max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg).eval()
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    h, hk = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = d // h
    per_layer = (N * L * d * d                # q_proj
                 + 2 * N * L * d * hk * hd     # k_proj, v_proj (grouped-query: fewer heads)
                 + 2 * N * h * L * L * hd      # scores and weighted sum, per query head
                 + N * L * d * d               # o_proj
                 + 3 * N * L * d * ff)         # gate, up, down
    lm_head = N * L * d * V
    fake, real = _count_both(model, _ids())
    # rotary angles are positions × inv_freq, an elementwise product here: no MACs
    assert fake.module("model.rotary_emb").total.macs == 0
    assert fake.module("model.rotary_emb").total.elementwise > 0
    assert fake.macs == layers * per_layer + lm_head
    assert fake.total == real.total
    assert fake.params.count == 2 * V * d + layers * (2 * d * d + 2 * d * hk * hd + 3 * d * ff + 2 * d) + d


def test_llama_on_meta_device_with_fake_tensors():
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=V)
    with torch.device("meta"):
        meta_model = transformers.LlamaForCausalLM(cfg).eval()
    real_model = transformers.LlamaForCausalLM(cfg).eval()
    ids = _ids()
    assert flopmeter.count(meta_model, ids).total == flopmeter.count(real_model, ids).total

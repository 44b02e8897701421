"""Prefill and decode with the KV cache for Hugging Face decoders, against closed forms."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from flopmeter.frontends import InputRequest, resolve  # noqa: E402
from flopmeter.generate import decode_step, generation  # noqa: E402


@pytest.fixture(scope="module")
def llama7b():
    return resolve("hf:llama-7b", InputRequest()).model


@pytest.mark.parametrize("position", [1, 512, 4096])
def test_llama7b_decode_per_token_closed_form(llama7b, position):
    d, ff, vocab, layers = 4096, 11008, 32000, 32          # hf:llama-7b (32 heads = 32 KV heads)
    step = decode_step(llama7b, position)
    # q, k, v, o projections (4·d²) + gated MLP (3·d·ff) per layer, the LM head (d·V), and
    # attention of one query over `position` keys: q·kᵀ and p·v, position·d MACs each per layer
    macs = layers * (4 * d * d + 3 * d * ff) + d * vocab + 2 * layers * position * d
    assert step.cost.macs == macs
    assert step.per_token()["flops"] == 2 * macs


def test_generation_totals_from_a_few_positions():
    import transformers

    d, ff, vocab, layers, heads = 64, 128, 96, 2, 4
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=d, intermediate_size=ff, vocab_size=vocab, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=2, max_position_embeddings=64))
    prompt, new, batch = 10, 6, 2
    g = generation(model, prompt, new, batch=batch)
    kv = 2 * (d // heads)                                       # two KV heads of width 16: k and v projections
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * ff         # q, k, v, o, MLP
    # prefill: every prompt token through the layers, causal attention over all prompt×prompt
    # pairs (counted in full), the LM head for the last position only (logits_to_keep=1)
    assert g.prefill.cost.macs == batch * (prompt * layers * per_layer + 2 * layers * prompt * prompt * d + d * vocab)
    # decode: Σ over positions p = 11…16 of one token's cost with p keys
    expected = sum(batch * (layers * per_layer + d * vocab + 2 * layers * p * d) for p in range(prompt + 1, prompt + new + 1))
    assert g.decode_total.macs == expected
    assert sorted(g.decode_at) == [11, 13, 16]
    assert g.kv_bytes_per_position == 2 * layers * batch * 2 * (d // heads) * 4


def test_generate_needs_a_decoder():
    from flopmeter import InputError
    with pytest.raises(InputError, match="Hugging Face decoder"):
        generation(torch.nn.Linear(2, 2), 4, 2)


def test_cli_generate_gpt2_json(capsys):
    import json

    from flopmeter.cli import main

    assert main(["hf:gpt2", "--generate", "16+4", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    layers, h, vocab = 12, 768, 50257
    # per new token: 12·h² per layer (QKV 3h², output h², MLP 8h²), the tied LM head h·V, and
    # attention over p keys (2·p·h per layer), for positions p = 17 … 20
    expected = sum(layers * 12 * h * h + h * vocab + 2 * layers * p * h for p in range(17, 21))
    assert d["decode"]["macs"] == expected
    assert d["decode"]["tokens"] == 4 and d["prefill"]["tokens"] == 16


def test_cli_generate_bad_spec(capsys):
    from flopmeter.cli import main

    assert main(["hf:gpt2", "--generate", "16x4"]) == 2
    assert "PROMPT+NEW" in capsys.readouterr().err

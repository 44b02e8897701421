"""The KV cache measured from the cache object a fake run with use_cache=True returns."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from flopmeter.frontends import InputRequest, resolve  # noqa: E402
from flopmeter.memory.kvcache import kv_cache  # noqa: E402

DATA = Path(__file__).parent / "data"


def _model(spec, dtype=None):
    return resolve(spec, InputRequest(dtype=dtype, seq_len=8)).model


def test_llama_70b_bf16_per_token():
    kv = kv_cache(_model("hf:llama-70b", torch.bfloat16), context=1)    # one fake run of one token
    assert kv.per_token == 2 * 80 * 8 * 128 * 2 == 327_680       # K and V · layers · kv heads · head dim · bytes
    assert kv.bytes == kv.per_token and len(kv.layers) == 80


def test_llama_7b_fp16_per_token_and_at_a_context():
    kv = kv_cache(_model("hf:llama-7b", torch.float16), context=64, batch=2)
    assert kv.per_token == 2 * 32 * 32 * 128 * 2 == 524_288
    assert kv.bytes == 2 * 64 * 524_288                           # batch · context · per token
    assert kv.layers[0].key_shape == (2, 32, 64, 128)


def test_gpt2_fp32_per_token():
    kv = kv_cache(_model("hf:gpt2"), context=3)
    assert kv.per_token == 2 * 12 * 768 * 4 == 73_728


def test_grouped_query_attention_keeps_only_its_kv_heads():
    # tests/data/hf_tiny: 2 layers, 4 query heads but 2 key/value heads of width 64 / 4 = 16
    kv = kv_cache(_model(f"hf:{DATA / 'hf_tiny'}"), context=10)
    assert kv.per_token == 2 * 2 * 2 * 16 * 4
    assert kv.bytes == 10 * kv.per_token


def test_sliding_window_keeps_window_minus_one_tokens():
    # shipped hf:mistral-7b: 32 layers, 8 kv heads of 128, sliding window 4096, in bf16
    kv = kv_cache(_model("hf:mistral-7b", torch.bfloat16), context=4100)
    assert kv.per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    assert {layer.kind for layer in kv.layers} == {"DynamicSlidingWindowLayer"}
    kept = 4096 - 1                       # Hugging Face keeps window − 1 past tokens per sliding layer
    assert sum(layer.bytes for layer in kv.layers) == kept * 131_072
    assert all(layer.key_shape == (1, 8, kept, 128) for layer in kv.layers)


def test_encoder_decoder_has_self_and_cross_caches_and_encoders_have_none():
    kv = kv_cache(_model("hf:t5-small"), context=4)
    self_layers = [layer for layer in kv.layers if layer.attention == "self"]
    cross = [layer for layer in kv.layers if layer.attention == "cross"]
    assert len(self_layers) == len(cross) == 6
    # 6 decoder layers · 8 heads · d_kv 64 · fp32, for the decoder's and the encoder's tokens
    assert sum(layer.bytes for layer in self_layers) == 4 * 2 * 6 * 8 * 64 * 4
    assert kv_cache(_model("hf:bert-base-uncased"), context=4) is None

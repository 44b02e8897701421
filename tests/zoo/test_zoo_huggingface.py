"""Full-size Hugging Face models built from their configs on the meta device (no weights, no
hub access) and counted on fake tensors, against closed forms derived from the architecture:
the MACs of every projection, the attention scores and weighted sums, and the LM head."""

import pytest
import torch

import flopmeter

pytestmark = pytest.mark.zoo
transformers = pytest.importorskip("transformers")

N, L = 1, 128


def _meta(cls, cfg):
    with torch.device("meta"):
        return cls(cfg).eval()


def _count(model, *args, **kwargs):
    report = flopmeter.count(model, *args, **kwargs, options=flopmeter.Options(strict=True))
    assert report.unsupported == {}
    return report


def _ids(vocab: int, length: int = L):
    return torch.randint(0, vocab, (N, length))


def encoder_layer_macs(rows: int, length: int, d: int, ff: int) -> int:
    """q, k, v, o projections + scores and weighted sum over all heads + the two FFN matmuls."""
    return N * (4 * rows * d * d + 2 * rows * length * d + 2 * rows * d * ff)


def test_bert_base():
    cfg = transformers.BertConfig()                   # bert-base-uncased shape
    d, ff, layers, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    report = _count(_meta(transformers.BertModel, cfg), _ids(v))
    pooler = N * d * d                                # dense layer on the [CLS] token
    assert report.macs == layers * encoder_layer_macs(L, L, d, ff) + pooler
    embeddings = (v + cfg.max_position_embeddings + cfg.type_vocab_size) * d + 2 * d
    per_layer = 4 * (d * d + d) + 2 * d + (d * ff + ff) + (ff * d + d) + 2 * d
    assert report.params.count == embeddings + layers * per_layer + d * d + d     # = 109,482,240


def test_gpt2():
    cfg = transformers.GPT2Config()                   # gpt2 (124M) shape
    d, layers, v = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    report = _count(_meta(transformers.GPT2LMHeadModel, cfg), _ids(v))
    lm_head = N * L * d * v                           # tied to the token embedding
    assert report.macs == layers * encoder_layer_macs(L, L, d, 4 * d) + lm_head
    assert report.params.count == v * d + cfg.n_positions * d + layers * (12 * d * d + 13 * d) + 2 * d


def test_llama_7b_shape_on_meta():
    cfg = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    d, ff, layers, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    model = _meta(transformers.LlamaForCausalLM, cfg)
    assert all(p.device.type == "meta" for p in model.parameters())
    report = _count(model, _ids(v))
    per_layer = N * (4 * L * d * d               # q, k, v, o projections (32 kv heads: no grouping)
                     + 2 * L * L * d             # scores and weighted sum, causal mask counted in full
                     + 3 * L * d * ff)           # gate, up, down
    assert report.macs == layers * per_layer + N * L * d * v
    assert report.params.count == 2 * v * d + layers * (4 * d * d + 3 * d * ff + 2 * d) + d   # 6,738,415,616


def test_t5_small():
    cfg = transformers.T5Config()                     # t5-small shape
    d, inner, ff, v = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    le, ld = L, 32
    model = _meta(transformers.T5ForConditionalGeneration, cfg)
    report = _count(model, _ids(v, le), kwargs={"decoder_input_ids": _ids(v, ld)})
    encoder = N * (4 * le * d * inner + 2 * le * le * inner + 2 * le * d * ff)
    decoder = N * (4 * ld * d * inner + 2 * ld * ld * inner            # self-attention
                   + 2 * ld * d * inner + 2 * le * d * inner           # cross-attention q, o and k, v
                   + 2 * ld * le * inner                               # cross scores and weighted sum
                   + 2 * ld * d * ff)
    lm_head = N * ld * d * v
    assert report.macs == cfg.num_layers * encoder + cfg.num_decoder_layers * decoder + lm_head
    assert report.module("encoder").total.macs == cfg.num_layers * encoder


def test_vit_base():
    cfg = transformers.ViTConfig(num_labels=1000)     # google/vit-base-patch16-224 shape
    d, ff, layers, p = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.patch_size
    patches = (cfg.image_size // p) ** 2
    tokens = patches + 1                              # + [CLS]
    report = _count(_meta(transformers.ViTForImageClassification, cfg),
                    input_shape=(N, cfg.num_channels, cfg.image_size, cfg.image_size))
    patch_embedding = N * patches * d * cfg.num_channels * p * p
    classifier = N * d * cfg.num_labels               # on the [CLS] token only
    assert report.macs == patch_embedding + layers * encoder_layer_macs(tokens, tokens, d, ff) + classifier

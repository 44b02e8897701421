"""The live-bytes timeline: arithmetic on small models, eager lifetimes, CUDA rounding, and the
prediction against an independent measurement of a real forward (torch.profiler's allocation
records, benchmarks/memory.py)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.memory import analyse, sparkline

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from memory import measure_forward  # noqa: E402

MEM = flopmeter.Options(memory=True)


def _mlp(inplace=False):
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(inplace=inplace), nn.Linear(20, 15))


class Skip(nn.Module):
    """A ResNet-style skip: ``a`` is kept in a local variable across two layers."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(8, 16, bias=False)
        self.l2 = nn.Linear(16, 16, bias=False)

    def forward(self, x):
        a = self.l1(x)
        b = torch.relu(a)
        c = self.l2(b)
        return c + a


def test_mlp_timeline_arithmetic():
    r = flopmeter.count(_mlp(), input_shape=(4, 10), options=MEM)
    tl = r.memory.timeline
    params = (10 * 20 + 20 + 20 * 15 + 15) * 4
    x, h, y = 4 * 10 * 4, 4 * 20 * 4, 4 * 15 * 4          # input, hidden, output bytes (fp32)
    assert tl.fixed == {"param": params, "input": x}
    # t (a view), addmm → h, relu → a second h (Sequential drops the first only after relu returns),
    # t, addmm → y while relu's output is still held
    assert tl.activations == [0, h, 2 * h, h, h + y]
    assert tl.live == [params + x + a for a in tl.activations]
    assert tl.peak.bytes == params + x + 2 * h and tl.peak.activations == 2 * h
    assert (tl.peak.module, tl.peak.op) == ("1", "aten.relu.default")
    assert tl.modules["0"].leaves == h and tl.modules["2"].leaves == y and tl.modules[""].leaves == y
    assert tl.modules["2"].peak_activations == h + y


def test_in_place_activation_allocates_nothing():
    tl = flopmeter.count(_mlp(inplace=True), input_shape=(4, 10), options=MEM).memory.timeline
    h, y = 4 * 20 * 4, 4 * 15 * 4
    assert tl.activations == [0, h, h, h, h + y]


def test_skip_connection_lives_until_the_program_drops_it():
    tl = flopmeter.count(Skip(), input_shape=(2, 8), options=MEM).memory.timeline
    t = 2 * 16 * 4                                  # every activation is (2, 16) fp32
    # eager lifetimes: a, b (a local) and c are all alive at the add; an ideal compiler would
    # have freed b after l2 (3·t)
    assert max(tl.activations) == 4 * t
    assert tl.peak.op == "aten.add.Tensor" and tl.peak.module == ""


def test_views_share_storage_and_count_once():
    class Views(nn.Module):
        def forward(self, x):
            y = x * 2
            return y.view(-1), y.t(), y[0]

    tl = flopmeter.count(Views(), input_shape=(3, 4), options=MEM).memory.timeline
    assert max(tl.activations) == 3 * 4 * 4


def test_cuda_rounds_every_storage_to_512_byte_blocks():
    r = flopmeter.count(_mlp(), input_shape=(4, 10), options=flopmeter.Options(memory=True, device="cuda"))
    tl = r.memory.timeline
    assert tl.rounding == 512
    block = lambda n: -(-n // 512) * 512      # noqa: E731
    assert tl.fixed["param"] == block(800) + block(80) + block(1200) + block(60)
    assert max(tl.activations) == 2 * block(320)
    assert analyse(r, rounding=None).timeline.fixed["param"] == (200 + 20 + 300 + 15) * 4


def test_total_with_weights_in_another_format():
    r = flopmeter.count(_mlp(), input_shape=(4, 10), options=MEM)
    m = analyse(r, weights="int8")
    # ≥2-D weights at 1 byte, biases at 2 bytes; the activations and input as they are
    assert m.total == (200 + 300) + (20 + 15) * 2 + 4 * 10 * 4 + 2 * 4 * 20 * 4
    assert m.total == r.memory.total - r.memory.stored.total + m.weights.total


def test_json_carries_the_memory_section():
    d = flopmeter.count(_mlp(), input_shape=(4, 10), options=MEM).to_dict()
    mem = d["memory"]
    assert mem["timeline"]["peak"]["by_role"]["act"] == 2 * 4 * 20 * 4
    assert mem["weights_by_format"]["bfloat16"]["params"] == (200 + 20 + 300 + 15) * 2
    assert "eager" in mem["semantics"]
    assert "memory" not in flopmeter.count(_mlp(), input_shape=(4, 10)).to_dict()


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert len(sparkline(list(range(1000)), width=40)) == 40


def test_memory_analysis_leaves_the_model_untouched():
    from guards import assert_unchanged, snapshot

    m, x = Skip().train(), torch.randn(2, 8)
    before = snapshot(m)
    flopmeter.count(m, x, options=MEM)
    flopmeter.count(m, x, options=flopmeter.Options(memory=True, mode="real"))
    assert_unchanged(m, before)


def _hf_tiny():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval(), (torch.zeros(1, 16, dtype=torch.long),)


@pytest.mark.parametrize("build", [
    lambda: (_mlp().eval(), (torch.randn(4, 10),)),
    lambda: (Skip().eval(), (torch.randn(2, 8),)),
    lambda: (nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 8)).eval(),
             (torch.randn(16, 32),)),
    _hf_tiny,
], ids=["mlp", "skip", "mlp-gelu-layernorm", "llama-tiny"])
def test_prediction_equals_the_profilers_measurement(build):
    model, args = build()
    predicted = max(flopmeter.count(model, *args, options=MEM).memory.timeline.activations)
    assert predicted == measure_forward(model, args).measured


@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("make, shape", [
    (lambda: __import__("models").TrainModeBN().train(), (2, 3, 10, 10)),
    (lambda: __import__("models").CachesInForward(), (2, 4)),
    (lambda: __import__("models").CalledTwice(), (2, 8)),
], ids=["train-mode-bn", "caches-in-forward", "called-twice"])
def test_guards_hold_with_memory_on(mode, make, shape):
    from guards import assert_unchanged, snapshot

    model, x = make(), torch.randn(*shape)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=flopmeter.Options(memory=True, mode=mode))
    assert_unchanged(model, before)
    assert r.memory.peak.bytes > 0


def test_tied_weights_are_one_storage_and_a_module_called_twice_has_two_calls():
    import models

    r = flopmeter.count(models.TiedWeights(), torch.zeros(1, 5, dtype=torch.long), options=MEM)
    assert r.memory.timeline.fixed["param"] == 50 * 8 * 4          # embedding = head: once
    r = flopmeter.count(models.CalledTwice(), input_shape=(2, 8), options=MEM)
    fc = r.memory.timeline.modules["fc"]
    assert fc.calls == 2 and fc.leaves == 2 * 8 * 4


def test_kv_per_token_run_leaves_the_model_untouched():
    from guards import assert_unchanged, snapshot

    model, (ids,) = _hf_tiny()
    before = snapshot(model)
    r = flopmeter.count(model, ids)
    kv = analyse(r, model=model).kv
    assert kv.per_token == 2 * 2 * 2 * 16 * 4 and kv.bytes == 16 * kv.per_token
    assert_unchanged(model, before)

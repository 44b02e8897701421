"""training_flops: a training step's FLOPs by phase, from formulas and from a fresh trace."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

import flopmeter
from flopmeter.errors import OptionsError
from flopmeter.mfu import StepCounter, gpu_row, resolve_peak, unwrap

B, I, H, O = 4, 8, 16, 3


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(I, H), nn.ReLU(), nn.Linear(H, O))


def linear_step_formula():
    """Forward: 2·B·in·out per Linear. Backward: 2·B·in·out for the weight gradient of each
    Linear and 2·B·in·out for the input gradient of every Linear but the first (the batch
    needs no gradient)."""
    forward = 2 * B * (I * H + H * O)
    backward = 2 * B * (I * H + H * O) + 2 * B * H * O
    return forward, backward


def test_linear_step_matches_the_formula():
    forward, backward = linear_step_formula()
    step = flopmeter.training_flops(mlp(), torch.randn(B, I), optimizer="adamw")
    assert (step.forward, step.backward, step.recompute, step.optimizer) == (forward, backward, 0, 0)
    assert step.total == step.model_flops == step.hardware_flops == forward + backward
    assert step.convention == "dot" and step.unsupported == ()
    assert step.signature == ("tensor", (B, I), "torch.float32")


def test_under_all_the_optimizer_and_elementwise_ops_count():
    step = flopmeter.training_flops(mlp(), torch.randn(B, I), optimizer="sgd", convention="all")
    forward, backward = linear_step_formula()
    assert step.forward > forward            # bias adds, ReLU and the loss's sum
    assert step.optimizer == (I * H + H + H * O + O) * 1    # plain SGD: one add per parameter element
    assert step.backward > backward


def test_step_equals_flop_counter_mode_of_the_real_step():
    model = mlp()
    x = torch.randn(B, I)
    counter = FlopCounterMode(display=False)
    real = copy.deepcopy(model)
    with counter:
        real(x).sum().backward()
    step = flopmeter.training_flops(model, x, optimizer=None)
    assert step.forward + step.backward == counter.get_total_flops()


class Checkpointed(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = mlp()

    def forward(self, x):
        return checkpoint(self.inner, x, use_reentrant=False)


def test_recompute_is_hardware_flops_not_model_flops():
    forward, backward = linear_step_formula()
    step = flopmeter.training_flops(Checkpointed(), torch.randn(B, I), optimizer=None, checkpointing=True)
    # The checkpointed forward runs again in backward up to PyTorch's early stop: the last
    # Linear's product is not recomputed, as backward needs its input, not its output.
    assert step.recompute == 2 * B * I * H
    assert step.model_flops == forward + backward
    assert step.hardware_flops == forward + backward + 2 * B * I * H
    with pytest.raises(OptionsError, match="recomputes nothing"):
        flopmeter.training_flops(mlp(), torch.randn(B, I), checkpointing=True)


def test_model_is_left_untouched():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flopmeter.training_flops(model, torch.randn(B, I))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_compiled_and_ddp_like_models_are_counted_through_the_original_module():
    model = mlp()
    compiled = torch.compile(model)
    assert unwrap(compiled) is model
    DistributedDataParallel = type("DistributedDataParallel", (nn.Module,), {})
    wrapper = DistributedDataParallel()
    wrapper.module = model
    assert unwrap(wrapper) is model
    x = torch.randn(B, I)
    assert flopmeter.training_flops(compiled, x) == flopmeter.training_flops(model, x)


def test_counter_caches_per_signature_and_is_bounded():
    counter = StepCounter(mlp(), maxsize=2)
    for b in (1, 2, 1, 3, 1):
        counter.flops(torch.randn(b, I))
    assert counter.traces == 3 and len(counter._cache) == 2
    counter.flops(torch.randn(2, I))          # evicted by 3: traced again
    assert counter.traces == 4


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=96, n_positions=256,
                                      bos_token_id=0, eos_token_id=0))


def lm_batch(n, batch=2):
    ids = torch.zeros(batch, n, dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone()}


class TinyLM(nn.Module):
    """One causal self-attention layer over token embeddings, returning its loss as a Hugging
    Face model does."""

    def __init__(self, vocab=32, d=16, heads=2):
        super().__init__()
        self.heads = heads
        self.emb, self.qkv, self.out = nn.Embedding(vocab, d), nn.Linear(d, 3 * d), nn.Linear(d, vocab)

    def forward(self, input_ids, labels):
        x = self.emb(input_ids)
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in self.qkv(x).chunk(3, -1))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        logits = self.out(x + y)
        return {"loss": nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()), "logits": logits}


def test_length_fit_at_an_unseen_length_equals_a_fresh_trace():
    model = TinyLM()
    counter = StepCounter(model)
    fit = counter.fit_lengths(lm_batch(16), sizes=(8, 16, 32), holdout=24)
    traced = counter.traces
    fitted = counter.flops(lm_batch(77))
    assert counter.traces == traced           # no new trace
    fresh = flopmeter.training_flops(model, lm_batch(77))
    assert fitted == fresh
    assert fit(77)["forward"] == fresh.forward
    assert "T²" in fit.polynomial()           # attention's scores grow with the square of the length


def test_peak_comes_from_the_dense_row_of_the_device_table():
    from flopmeter.devices import get_device
    peak = resolve_peak(device="h100", dtype=torch.bfloat16)
    assert peak.flops == get_device("H100 SXM").matrix["bf16"] == 989.5e12
    assert "H100 SXM" in peak.source and "bf16" in peak.source
    assert resolve_peak(peak_flops=1e12).flops == 1e12
    # Names as CUDA reports them find their row: the longest name or alias they start with.
    assert gpu_row("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert gpu_row("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert gpu_row("NVIDIA H200").name == "H200 SXM"
    with pytest.raises(OptionsError, match="peak throughput") as err:
        resolve_peak(on=torch.device("cpu"))
    assert "peak_flops" in err.value.hint and "device=" in err.value.hint


def test_nanogpt_estimate_for_gpt2_124m_at_its_vocabulary():
    """nanoGPT's estimate_mfu: 6·N + 12·L·H·Q·T per token, N without the position embedding,
    for its GPT-2 124M (vocabulary padded to 50304, LayerNorm and Linear biases) at T = 1024."""
    import importlib.util
    import sys
    from pathlib import Path
    from transformers import GPT2Config, GPT2LMHeadModel
    path = Path(__file__).parents[1] / "benchmarks" / "mfu_table.py"
    spec = importlib.util.spec_from_file_location("mfu_table", path)
    mfu_table = importlib.util.module_from_spec(spec)
    sys.modules.pop("mfu_table", None)
    spec.loader.exec_module(mfu_table)
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50304))
    n = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    d, layers, vocab = 768, 12, 50304
    # Per block: two LayerNorms (2·2d), qkv (3d² + 3d), attention out (d² + d), MLP (8d² + 5d).
    assert n == vocab * d + layers * (12 * d * d + 13 * d) + 2 * d == 123_689_472
    assert mfu_table.nanogpt_per_token(n, 12, 12, 64, 1024) == 855_383_040 == 6 * n + 12 * 12 * 12 * 64 * 1024


def test_hugging_face_gradient_checkpointing_is_recompute():
    model = tiny_gpt2()
    plain = flopmeter.training_flops(model, lm_batch(16))
    model.gradient_checkpointing_enable()
    step = flopmeter.training_flops(model, lm_batch(16), checkpointing=True)
    assert step.model_flops == plain.model_flops
    assert 0 < step.recompute < step.forward

"""A training step against independent measurements on real tensors:

- PyTorch's FlopCounterMode around a real ``loss.backward()``: our backward ``dot`` FLOPs per
  op type equal its counts for matmuls, convolutions and attention;
- ``saved_tensors_hooks`` in a real forward: the unique storages autograd keeps (parameters
  and buffers excluded, inputs included) have exactly the bytes our fake run predicts.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

import flopmeter
from flopmeter import Options
from flopmeter.trace import training

pytestmark = pytest.mark.skipif(not training.supported(),
                                reason="this PyTorch has no torch.autograd.graph.node_creation_hook")

torchvision = pytest.importorskip("torchvision")
TRAIN = Options(training=True)


def real_backward_flops(model, *args) -> dict[str, int]:
    """FlopCounterMode's counts per op (``aten.mm``, …) for a real backward of sum(outputs)."""
    model = copy.deepcopy(model).train()
    out = model(*args)
    out = out.logits if hasattr(out, "logits") else out
    loss = out.sum()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items() if n}


def our_backward_flops(report) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for row in report.ops:
        if row.event.phase == "backward" and row.cost.macs:
            out[row.event.op] += row.cost.flops("dot")
    return dict(out)


def test_resnet18_backward_matches_flop_counter():
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 32, 32)
    theirs = real_backward_flops(model, x)
    ours = our_backward_flops(flopmeter.count(model, x, options=TRAIN))
    assert set(theirs) == {"aten.convolution_backward", "aten.mm"}
    assert ours == theirs


def test_vit_backward_matches_flop_counter():
    from torch.utils.flop_counter import sdpa_backward_flop_count

    model = torchvision.models.vit_b_16(image_size=32)
    x = torch.randn(2, 3, 32, 32)
    theirs = real_backward_flops(model, x)
    report = flopmeter.count(model, x, options=TRAIN)
    ours = our_backward_flops(report)
    kernel = "aten._scaled_dot_product_flash_attention_for_cpu_backward"
    assert set(ours) == set(theirs) | {kernel}
    for op in theirs:
        assert ours[op] == theirs[op], op
    # FlopCounterMode has no entry for the CPU flash kernel (it counts the CUDA ones); its
    # formula for them, applied to each call's shapes: the scores q·kᵀ recomputed, dP, dV, dQ, dK
    # — five products of 2·B·L·S·E FLOPs each here (E = Ev = 64, L = S = 5).
    calls = [r for r in report.ops if r.op == kernel]
    assert len(calls) == 12                                    # one per encoder layer
    for row in calls:
        g, q, k, v = (row.event.arg(n).shape for n in ("grad_out", "query", "key", "value"))
        b, h, l, e = q
        s_ = k[2]
        assert (b, h, l, e) == (2, 12, 5, 64)                   # 1 + (32/16)² = 5 tokens, 12 heads of 64
        assert row.cost.flops("dot") == sdpa_backward_flop_count(g, q, k, v) == 5 * 2 * b * h * l * s_ * e


def test_gpt2_eager_backward_matches_flop_counter():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32,
                                  attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 128, (2, 12))
    theirs = real_backward_flops(model, ids)
    ours = our_backward_flops(flopmeter.count(model, ids, options=TRAIN))
    assert set(theirs) == {"aten.mm", "aten.bmm"}
    assert ours == theirs


# -- saved for backward -------------------------------------------------------------

def real_saved_bytes(model, *args, **kwargs) -> int:
    """Bytes of the unique storages a real forward saves for backward (pack hook), parameters and
    buffers excluded, inputs included."""
    model = copy.deepcopy(model).train()
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in own:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = model(*args, **kwargs)
        out = out.logits if hasattr(out, "logits") else out
        out.sum()
    return sum(seen.values())


SMALL = ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "shufflenet_v2_x0_5"]
ZOO = ["resnet50", "densenet121", "efficientnet_b0", "mobilenet_v2", "mnasnet0_5", "regnet_y_400mf",
       "googlenet", "vgg11", "alexnet", "convnext_tiny", "resnext50_32x4d", "wide_resnet50_2",
       "efficientnet_v2_s", "regnet_x_400mf", "shufflenet_v2_x1_0", "mobilenet_v3_large", "vit_b_16",
       "swin_t", "maxvit_t"]


def _check_saved(name: str, size: int = 64):
    kwargs = {"image_size": size} if name.startswith("vit") else {}
    if name == "googlenet":
        kwargs = {"aux_logits": False, "init_weights": False}
    model = torchvision.models.get_model(name, **kwargs)
    x = torch.randn(2, 3, size, size)
    report = flopmeter.count(model, x, options=TRAIN)
    assert report.training["saved_bytes"] == real_saved_bytes(model, x)


@pytest.mark.parametrize("name", SMALL)
def test_saved_for_backward_exact(name):
    _check_saved(name)


@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO)
def test_saved_for_backward_exact_zoo(name):
    _check_saved(name, 224 if name in ("maxvit_t", "swin_t", "alexnet", "googlenet") else 64)


@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
def test_saved_for_backward_exact_hf(kind):
    transformers = pytest.importorskip("transformers")
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128))
    elif kind == "bert":
        model = transformers.BertModel(transformers.BertConfig(num_hidden_layers=2, hidden_size=64,
                                                               num_attention_heads=4, intermediate_size=128,
                                                               vocab_size=128))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=128))
    ids = torch.randint(0, 128, (2, 12))
    out_key = None if kind != "bert" else "last_hidden_state"
    report = flopmeter.count(model, ids, options=TRAIN)
    if out_key:      # BertModel returns hidden states and a pooled output; the loss sums both
        expected = real_saved_bytes(_Summed(model), ids)
    else:
        expected = real_saved_bytes(model, ids)
    assert report.training["saved_bytes"] == expected


class _Summed(torch.nn.Module):
    """The sum of every float output, as the default loss takes it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        out = self.model(ids)
        return sum(v.sum() for v in out.values() if isinstance(v, torch.Tensor) and v.is_floating_point())

"""``flopmeter plan`` against independent figures: PyTorch's own FSDP2 memory tracker
(``torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker``) run on the same program, and the
closed forms of Korthikanti et al. 2022 (activation memory) and Narayanan et al. 2021 (FLOPs)."""

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from flopmeter.analyses.parallel import plan
from flopmeter.analyses.parallel.program import (
    Parallelism,
    build_mesh,
    fake_world,
    parallelize,
)
from flopmeter.analyses.parallel.record import warm_optimizer
from flopmeter.trace.training import make_optimizer

# a tiny Llama: 4 heads of 12 over 48, 2 key/value heads, MLP 96, vocabulary 96, 2 layers
H, HEADS, KV, I, V, L = 48, 4, 2, 96, 96, 2
B, S = 2, 16


def tiny():
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                                      num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config)


def tracked_fsdp2_step(world: int) -> dict:
    """PyTorch's FSDPMemTracker over one steady-state step of the plan's own FSDP2 program (the
    plan's parallelize, on the fake process group, under a plain FakeTensorMode): its peak snapshot."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    warnings.simplefilter("ignore")
    with fake_world(world):
        meshes = build_mesh(world, 1)
        with torch.device("meta"):
            model = tiny()
        model.train()
        parallelize(model, meshes, Parallelism(fsdp=True))
        with FakeTensorMode(allow_non_fake_inputs=True):
            model.to_empty(device="cpu")
            params = list(model.parameters())
            optimizer = make_optimizer("adamw", params, torch.device("cuda"))
            warm_optimizer(optimizer, params)
            ids = torch.zeros(B, S, dtype=torch.long)
            tracker = FSDPMemTracker(model, optimizer)
            tracker.track_inputs((ids,))
            with tracker:
                out = model(input_ids=ids, labels=ids)
                out.loss.backward()
                optimizer.step()
                del out
                optimizer.zero_grad(set_to_none=True)
            (snapshot,) = tracker.get_tracker_snapshot("peak").values()
    return {str(getattr(k, "value", k)): v for k, v in snapshot.items()}


def test_fsdp2_memory_equals_pytorchs_own_tracker_of_the_same_program():
    p = plan(tiny, cluster="2xH100", fsdp=True, batch=B, seq_len=S, compute_dtype=None)
    theirs = tracked_fsdp2_step(2)
    ours = p.memory.by_kind
    # the peak is the same number of bytes
    assert p.memory.peak == theirs["Total"]
    # the kinds both define the same way are equal
    for mine, tracker in (("parameters", "Sharded Param"), ("unsharded parameters", "Unsharded Param"),
                          ("gradients", "Sharded Grad"), ("optimizer state", "OptState"), ("buffers", "Buffer"),
                          ("inputs", "Inputs")):
        assert ours[mine] == theirs[tracker], mine
    # the rest is split differently, and sums the same
    rest = ("Activation", "Temp", "All Gather", "Reduce Scatter", "Unsharded Grad")
    assert ours["activations"] + ours["backward temporaries"] + ours["communication buffers"] == \
        sum(theirs[k] for k in rest)
    # the gaps: the root's all-gathered buffer (embedding V·h, LM head h·V, final norm h; float32,
    # padded to a multiple of the 2 ranks) is 'Temp' to the tracker and a communication buffer here;
    # the seed gradient of the loss (one float32), made by backward() before any module's backward
    # hook runs, is an 'Activation' to the tracker and a backward temporary here
    root = -(-(2 * V * H + H) // 2) * 2 * 4
    assert ours["communication buffers"] - theirs["All Gather"] - theirs["Reduce Scatter"] == root
    assert theirs["Activation"] - ours["activations"] == 4
    assert ours["backward temporaries"] + root - 4 == theirs["Temp"] + theirs["Unsharded Grad"]


def gpt_like():
    """A Llama shaped as Narayanan et al.'s GPT layer counts: key/value heads = heads (q, k, v, o:
    4h² MACs per token) and MLP width 8h/3 (gate, up, down: 3·h·8h/3 = 8h², GPT's two h×4h)."""
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=8 * H // 3, num_hidden_layers=L,
                                      num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config)


@pytest.mark.parametrize("tp", [1, 2])
def test_flops_with_full_recompute_are_narayanan_et_al_less_the_last_matmul_not_rerun(tp):
    p = plan(gpt_like, cluster=f"{tp}xH100", tp=tp, recompute="full", batch=B, seq_len=S, compute_dtype=None)
    phases = p.flops_by_phase
    traced = phases["forward"] + phases["backward"] + phases["recompute"]
    # Narayanan et al. 2021, eq. 3: 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) FLOPs per iteration with
    # full recompute (forward, backward = 2 × forward, recompute = forward; logits forward and
    # backward, not recomputed); in exact integers: 96Bslh² + 16Bs²lh + 6BshV
    narayanan = 96 * B * S * L * H**2 + 16 * B * S**2 * L * H + 6 * B * S * H * V
    # non-reentrant checkpointing stops once backward's tensors are back: each layer's last matmul
    # (down_proj, B·s·I·h MACs = 2·B·s·(8h/3)·h FLOPs) is not rerun
    not_rerun = L * 2 * B * S * (8 * H // 3) * H
    # the CPU flash attention kernel's backward recomputes the scores QKᵀ (FlashAttention's
    # backward: 5 matmuls of b·s²·h/… where the eager backward has 4): one more b·s²·h MACs per layer
    flash = L * 2 * B * S**2 * H
    # every matmul is split over the tp ranks (heads, MLP width, vocabulary columns)
    assert traced == (narayanan - not_rerun + flash) // tp
    assert phases["recompute"] == (L * (24 * B * S * H**2 + 4 * B * S**2 * H) - not_rerun) // tp

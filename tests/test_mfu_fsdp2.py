"""MFU of FSDP2 (fully_shard) models: a real two-process run on the CPU with gloo.

Each rank trains a model sharded with ``fully_shard`` per layer and at the root for a few
steps under the plain-loop MFUMeter, on a local batch of its own size. The logged FLOPs of a
step must be the unsharded model's forward and backward for that batch (training_flops of a
copy taken before sharding) plus the optimizer on the rank's own shards; counting must leave
the model's hooks and FSDP's state as they were, issue no collective, and not change what the
training computes (the same run without counting ends on the same parameters).
"""

from __future__ import annotations

import copy
import enum
import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

WORLD = 2
ROWS_MLP = {"0.weight": (10, 6), "0.bias": (10,), "2.weight": (3, 10), "2.bias": (3,)}

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)
try:
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
except ImportError:
    pytest.skip("this torch has no torch.distributed.fsdp.fully_shard", allow_module_level=True)


class Collectives(TorchDispatchMode):
    """Every collective op dispatched while active (c10d, functional collectives, FSDP's own ops),
    on real or fake tensors."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace in ("c10d", "_c10d_functional", "c10d_functional", "fsdp"):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _plain(v):
    return v if isinstance(v, (bool, int, float, str, type(None), enum.Enum)) else ("id", id(v))


def snapshot(model: nn.Module) -> list:
    """What counting must not change: each module's class, attribute names, hook dicts (keys
    and hook objects), registered parameter objects and train flag; the attributes of each FSDP
    state and parameter group (plain values, or the identity of the object held); and every
    parameter's local shard values and whether it has a gradient."""
    out = []
    for name, m in model.named_modules():
        hooks = {k: [(key, id(h)) for key, h in v.items()] for k, v in vars(m).items()
                 if "hooks" in k and isinstance(v, dict)}
        out.append((name, type(m).__qualname__, sorted(vars(m)), hooks,
                    [(k, id(p)) for k, p in m._parameters.items()], m.training))
        if isinstance(m, FSDPModule):
            state = m._get_fsdp_state()
            out.append(sorted((k, _plain(v)) for k, v in vars(state).items()))
            for group in getattr(state, "_fsdp_param_groups", ()):
                out.append(sorted((k, _plain(v)) for k, v in vars(group).items()))
    for name, p in model.named_parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        out.append((name, type(p).__name__, local.detach().clone().tolist(), p.grad is None))
    return out


def first_difference(a: list, b: list):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, repr(x)[:300], repr(y)[:300]
    return None if len(a) == len(b) else ("length", len(a), len(b))


def mlp():
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))


def llama():
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    return transformers.LlamaForCausalLM(cfg)


def shard(model: nn.Module, blocks: list[nn.Module], **kwargs) -> None:
    for block in blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)


def train(build, blocks, batches, loss_fn, meter_kwargs=None) -> dict:
    """A few real AdamW steps of a freshly built (seed 0) model sharded per block and at the
    root; with ``meter_kwargs``, under an MFUMeter whose every step is checked for changes to
    the model and for collectives. Returns what the parent asserts on."""
    from flopmeter.integrations.loop import MFUMeter

    torch.manual_seed(0)
    model = build()
    plain = copy.deepcopy(model)                     # the unsharded model, for the expected FLOPs
    shard(model, blocks(model))
    group = dist.distributed_c10d._get_default_group()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    logged, checks, meter = [], [], None
    if meter_kwargs is not None:
        meter = MFUMeter(model, optimizer="adamw", peak_flops=1e12, log=logged.append, **meter_kwargs)
        meter.start()
    for batch in batches:
        loss_fn(model, batch).backward()
        opt.step()
        opt.zero_grad()
        if meter is not None:
            before, seq = snapshot(model), group._get_sequence_number_for_group()
            with Collectives() as seen:
                rec = meter.step(batch)
            checks.append({"changed": first_difference(before, snapshot(model)), "ops": seen.ops,
                           "sequence": group._get_sequence_number_for_group() - seq,
                           "phases": rec.flops.by_phase, "unsupported": list(rec.flops.unsupported)})
    out = {"final": [p.to_local().detach().clone().tolist() for p in model.parameters()]}
    if meter is not None:
        import flopmeter

        ref = flopmeter.training_flops(plain, batches[0], optimizer="adamw", convention=meter_kwargs["convention"])
        out.update(logged=[m["flopmeter/step_flops"] for m in logged], checks=checks, reference=ref.by_phase,
                   traces=meter.counter.traces,
                   shards={n: p.to_local().numel() for n, p in model.named_parameters()})
    return out


def mlp_case(rank: int) -> dict:
    x = torch.randn(4 - rank, 6, generator=torch.Generator().manual_seed(rank))   # rank 0: 4 samples, rank 1: 3
    batches = [x, x.clone(), x.clone()]
    blocks = lambda m: [m[0], m[2]]
    loss = lambda m, b: m(b).sum()
    counted = train(mlp, blocks, batches, loss, {"convention": "all"})
    counted["uncounted_final"] = train(mlp, blocks, batches, loss)["final"]
    return counted


def mid_step_case(rank: int) -> dict:
    """Counted between a forward and its backward with reshard_after_forward=False, when the
    modules hold their parameters whole, and before any forward, when they hold the shards."""
    import flopmeter

    torch.manual_seed(0)
    model = mlp()
    shard(model, [model[0], model[2]], reshard_after_forward=False)
    x = torch.randn(4 - rank, 6, generator=torch.Generator().manual_seed(rank))
    between = flopmeter.training_flops(model, x, optimizer="adamw", convention="all")
    out = model(x)
    held = sorted({type(p).__name__ for p in model.parameters()})
    before = snapshot(model)
    with Collectives() as seen:
        during = flopmeter.training_flops(model, x, optimizer="adamw", convention="all")
    changed = first_difference(before, snapshot(model))
    out.sum().backward()
    return {"between": between.by_phase, "during": during.by_phase, "held": held, "changed": changed,
            "ops": seen.ops}


def llama_case(rank: int) -> dict | None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None
    ids = torch.randint(0, 64, (3 - rank, 8), generator=torch.Generator().manual_seed(rank))   # 3 or 2 sequences
    batches = [{"input_ids": ids, "labels": ids}] * 2
    blocks = lambda m: list(m.model.layers)
    loss = lambda m, b: m(**b).loss
    return train(llama, blocks, batches, loss, {"convention": "dot"})


class Head(nn.Linear):
    def score(self, x):
        return nn.functional.linear(x, self.weight, self.bias)


class Scored(nn.Module):
    """A forward that calls a method of a sharded module made an FSDP forward method."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(6, 10), Head(10, 3)

    def forward(self, x):
        return self.head.score(self.body(x))


def forward_method_case() -> dict:
    from torch.distributed.fsdp import register_fsdp_forward_method

    import flopmeter

    torch.manual_seed(0)
    model = Scored()
    plain = copy.deepcopy(model)
    shard(model, [model.body, model.head])
    register_fsdp_forward_method(model.head, "score")
    x = torch.randn(2, 6)
    before = snapshot(model)
    with Collectives() as seen:
        step = flopmeter.training_flops(model, x)
    return {"step": step.by_phase, "reference": flopmeter.training_flops(plain, x).by_phase, "ops": seen.ops,
            "changed": first_difference(before, snapshot(model))}


def mixed_precision_case() -> dict:
    """Counted before any forward: the stand-in computes in the policy's bfloat16, casting the
    float32 input as FSDP's hook does."""
    import flopmeter
    from flopmeter.mfu import peak_dtype

    torch.manual_seed(0)
    model = mlp()
    plain = copy.deepcopy(model).to(torch.bfloat16)
    shard(model, [model[0], model[2]], mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
    x = torch.randn(5, 6)
    step = flopmeter.training_flops(model, x, optimizer="adamw")
    ref = flopmeter.training_flops(plain, x.to(torch.bfloat16), optimizer="adamw")
    return {"step": step.by_phase, "reference": ref.by_phase, "peak_dtype": str(peak_dtype(model)),
            "unsupported": list(step.unsupported)}


def refused_case(rank: int) -> str:
    """A DTensor parameter outside every fully_shard module: a rank does not compute with it whole."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import flopmeter

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    fully_shard(model[0])
    mesh = init_device_mesh("cpu", (WORLD,))
    model[1].weight = nn.Parameter(distribute_tensor(model[1].weight.detach(), mesh, [Shard(0)]))
    try:
        flopmeter.training_flops(model, torch.randn(2, 4))
    except flopmeter.errors.FlopmeterError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def run_rank(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        result = {"mlp": mlp_case(rank), "mid_step": mid_step_case(rank), "llama": llama_case(rank),
                  "mixed": mixed_precision_case(), "forward_method": forward_method_case(),
                  "refused": refused_case(rank)}
    finally:
        dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("fsdp2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run_rank, args=(port, str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def local_rows(rows: int, rank: int) -> int:
    """FSDP2 shards dim 0 as torch.chunk does: rank 0 gets ceil(rows / 2) rows, rank 1 the rest."""
    first = -(-rows // WORLD)
    return first if rank == 0 else rows - first


def check_untouched(result: dict) -> None:
    for check in result["checks"]:
        assert check["changed"] is None, check["changed"]       # hooks, FSDP state, shards, grads as before
        assert check["ops"] == []                               # no collective dispatched while counting
        assert check["sequence"] == 0                           # and none reached the process group
        assert check["unsupported"] == []                       # FSDP's all-gather did not run in the trace
    if "uncounted_final" in result:                             # training computed the same as without counting
        assert result["final"] == result["uncounted_final"]


@pytest.mark.parametrize("rank", range(WORLD))
def test_mlp_step_flops_per_rank(ranks, rank):
    result = ranks[rank]["mlp"]
    ref = result["reference"]                 # training_flops of the unsharded copy, same local batch, `all`
    # the rank's shards: torch.chunk along dim 0
    local = {n: local_rows(s[0], rank) * (s[1] if len(s) > 1 else 1) for n, s in ROWS_MLP.items()}
    assert result["shards"] == local
    # rank 0: 5·6 + 5 + 2·10 + 2 = 57 elements; rank 1: 5·6 + 5 + 1·10 + 1 = 46
    assert sum(local.values()) == (57 if rank == 0 else 46)
    # AdamW (torch's for-loop step on CPU) under `all`, per element of the shard: param.mul_(1 − lr·wd),
    # exp_avg.lerp_, exp_avg_sq.mul_ and .addcmul_, sqrt, / bias_correction2_sqrt, .add_(eps),
    # param.addcdiv_ = 7 elementwise + 1 transcendental; plus step += 1 once per parameter (4 of them)
    optimizer = 8 * sum(local.values()) + 4                   # 460 on rank 0, 372 on rank 1
    # the unsharded count steps the whole model: 8 · (60 + 10 + 30 + 3) + 4 = 828
    assert ref["optimizer"] == 8 * (60 + 10 + 30 + 3) + 4
    for phases in (c["phases"] for c in result["checks"]):
        assert phases == {"forward": ref["forward"], "backward": ref["backward"], "recompute": 0,
                          "optimizer": optimizer}
    assert result["logged"] == [ref["forward"] + ref["backward"] + optimizer] * 3
    assert result["traces"] == 1
    check_untouched(result)


@pytest.mark.parametrize("rank", range(WORLD))
def test_counted_between_forward_and_backward_the_same(ranks, rank):
    result = ranks[rank]["mid_step"]
    assert result["held"] == ["Parameter"]          # the modules hold whole parameters, not DTensor shards
    assert result["during"] == result["between"] == ranks[rank]["mlp"]["checks"][0]["phases"]
    assert result["changed"] is None and result["ops"] == []


@pytest.mark.parametrize("rank", range(WORLD))
def test_llama_step_flops_per_rank(ranks, rank):
    result = ranks[rank]["llama"]
    if result is None:
        pytest.skip("transformers is not installed")
    ref = result["reference"]                 # the unsharded Llama on the rank's 3 − rank sequences of 8
    assert ref["forward"] > 0 and ref["optimizer"] == 0       # under `dot` an optimizer step has no products
    assert result["logged"] == [ref["forward"] + ref["backward"]] * 2
    assert all(c["phases"] == ref for c in result["checks"])
    check_untouched(result)


def test_the_ranks_batches_give_their_own_flops(ranks):
    # rank 0 has 3 sequences and rank 1 two: every product of the step scales with the batch
    a, b = (r["llama"] for r in ranks)
    if a is None:
        pytest.skip("transformers is not installed")
    assert a["reference"]["forward"] * 2 == b["reference"]["forward"] * 3


def test_mixed_precision_counts_in_the_param_dtype(ranks):
    for result in (r["mixed"] for r in ranks):
        assert result["step"] == result["reference"]
        assert result["peak_dtype"] == "torch.bfloat16" and result["unsupported"] == []


def test_an_fsdp_forward_method_runs_without_fsdp(ranks):
    for result in (r["forward_method"] for r in ranks):
        assert result["step"] == result["reference"]
        assert result["ops"] == [] and result["changed"] is None


def test_a_dtensor_outside_fully_shard_is_refused(ranks):
    for result in (r["refused"] for r in ranks):
        assert result.startswith("InputError: parameter '1.weight' is a DTensor outside every fully_shard module")

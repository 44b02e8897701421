"""``flopmeter plan``: a training step of a parallelized model traced as rank 0 on a fake process
group, checked against a real multi-process run of the same program (gloo, on this CPU) and
against the closed forms written out here: Megatron's TP all-reduces, FSDP2's dim-0 padding, the
ZeRO bytes per parameter, the collective cost model and the Llama forward's MACs."""

import json
import os
import tempfile

import pytest
import torch

transformers = pytest.importorskip("transformers")

from flopmeter.analyses.parallel import PlanConfig, collective_time, parse_cluster, plan
from flopmeter.analyses.parallel.closed_forms import (
    buckets,
    fsdp_shard_numel,
    megatron_tp_layer,
    zero_bytes_per_param,
)
from flopmeter.analyses.parallel.collectives import signature
from flopmeter.cli import main
from flopmeter.errors import InputError, ModelForwardError, OptionsError

# a tiny Llama: 8 heads of 8 over 64, 4 key/value heads, MLP 128, vocabulary 128, 2 layers
H, HEADS, KV, I, V, L = 64, 8, 4, 128, 128, 2
B, S = 2, 16


def tiny(vocab: int = V):
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                                      num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config)


def tiny_plan(**options):
    options.setdefault("cluster", "2xH100")
    return plan(tiny, batch=B, seq_len=S, **options)


def traced(p):
    return [c for c in p.collectives if c.source == "traced"]


# -- a real run of the same program: gloo, one process per rank ------------------------------------

BOOKKEEPING = ("_c10d_functional.wait_tensor", "_c10d_functional._wrap_tensor_autograd")   # move no data


def _real_rank(rank: int, world: int, store: str, runs: list, out: str) -> None:
    """One rank: for each (dp, tp, Parallelism, compute dtype) build the tiny Llama with real
    weights, parallelize it with the plan's own function, warm the optimizer's state, then record
    every collective op of one step with this test's own dispatch mode."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor
    from torch.utils._python_dispatch import TorchDispatchMode

    from flopmeter.analyses.parallel.program import build_mesh, parallelize

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)

    def group_size(func, args) -> int:
        from torch._C._distributed_c10d import ProcessGroup
        from torch.distributed.distributed_c10d import _resolve_process_group
        for a in args:
            if isinstance(a, torch.ScriptObject) and "ProcessGroup" in str(a._type()):
                return ProcessGroup.unbox(a).size()
            if isinstance(a, str) and a not in ("sum", "avg", "max", "min", "product"):
                return _resolve_process_group(a).size()
        return -1

    class Collectives(TorchDispatchMode):
        """(kind, group size, bytes) of each collective: bytes of an all-reduce's input, an
        all-gather's output, a reduce-scatter's input."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if any(issubclass(t, DTensor) for t in types):
                return NotImplemented          # DTensor: its local ops come back here
            out = func(*args, **(kwargs or {}))
            name = f"{func.namespace}.{func._opname}"
            nbytes = lambda t: t.numel() * t.element_size()
            if name in ("_c10d_functional.all_reduce", "c10d.allreduce_"):
                t = args[0][0] if isinstance(args[0], list) else args[0]
                self.seen.append(("all_reduce", group_size(func, args), nbytes(t)))
            elif name == "_c10d_functional.all_gather_into_tensor":
                self.seen.append(("all_gather", group_size(func, args), nbytes(out)))
            elif name == "c10d._allgather_base_":
                self.seen.append(("all_gather", group_size(func, args), nbytes(args[0])))
            elif name == "_c10d_functional.reduce_scatter_tensor":
                self.seen.append(("reduce_scatter", group_size(func, args), nbytes(args[0])))
            elif name == "c10d._reduce_scatter_base_":
                self.seen.append(("reduce_scatter", group_size(func, args), nbytes(args[1])))
            elif func.namespace in ("c10d", "_c10d_functional") and name not in BOOKKEEPING:
                self.seen.append((name, group_size(func, args), -1))      # anything else fails the comparison
            return out

    results = []
    for dp, tp, how, compute in runs:
        torch.manual_seed(0)
        model = tiny()
        model.train()
        parallelize(model, build_mesh(dp, tp), how)
        params = [p for p in model.parameters()]
        foreach = len({isinstance(p, DTensor) for p in params}) == 1
        optimizer = torch.optim.AdamW(params, foreach=foreach)
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ids = torch.zeros(B, S, dtype=torch.long)
        mode = Collectives()
        autocast = torch.autocast("cpu", dtype=compute) if compute is not None else torch.autocast("cpu", enabled=False)
        with mode:
            with autocast:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
        results.append(mode.seen)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()


def real_collectives(world: int, runs: list) -> list[dict]:
    """Run ``runs`` on ``world`` gloo processes (forked: torch is already imported); rank 0's
    collectives per run as (kind, group size, bytes) → calls."""
    import torch.multiprocessing as mp
    tiny()                   # transformers' Llama imported here once, not by every forked rank
    with tempfile.TemporaryDirectory() as tmp:
        store, out = os.path.join(tmp, "store"), os.path.join(tmp, "out.json")
        mp.start_processes(_real_rank, args=(world, store, runs, out), nprocs=world, start_method="fork")
        with open(out) as f:
            seen = json.load(f)
    counted = []
    for items in seen:
        d: dict = {}
        for kind, size, nbytes in items:
            d[(kind, size, nbytes)] = d.get((kind, size, nbytes), 0) + 1
        counted.append(d)
    return counted


def test_every_collective_equals_a_real_two_process_run_of_fsdp2_and_of_tensor_parallelism():
    from flopmeter.analyses.parallel.program import Parallelism
    bf16, fp32 = torch.bfloat16, torch.float32
    runs = [(2, 1, Parallelism(fsdp=True, param_dtype=bf16, reduce_dtype=fp32), None),       # FSDP2, mixed precision
            (1, 2, Parallelism(tp=2), bf16),                                                 # TP under autocast
            (1, 2, Parallelism(tp=2, sp=True), bf16)]                                        # TP + sequence parallel
    real = real_collectives(2, runs)
    plans = [tiny_plan(fsdp=True), tiny_plan(tp=2), tiny_plan(tp=2, sp=True)]
    for p, seen in zip(plans, real):
        assert seen, "the real run issued no collectives"
        assert signature(traced(p)) == seen


@pytest.mark.zoo
def test_every_collective_equals_a_real_four_process_run_of_tp_with_fsdp2():
    from flopmeter.analyses.parallel.program import Parallelism
    runs = [(2, 2, Parallelism(tp=2, sp=True, fsdp=True, recompute="full", param_dtype=torch.bfloat16,
                               reduce_dtype=torch.float32), None)]
    (seen,) = real_collectives(4, runs)
    p = tiny_plan(cluster="4xH100", tp=2, sp=True, fsdp=True, recompute="full")
    assert signature(traced(p)) == seen


# -- closed forms ------------------------------------------------------------------------------------

def test_tensor_parallel_all_reduces_are_megatrons_two_per_layer_forward_and_backward():
    p = tiny_plan(tp=2)
    # per layer: 2 all-reduces of b·s·h elements forward (the attention and MLP outputs: bf16 under
    # autocast), 2 backward (their input gradients, in the float32 residual stream's dtype)
    expected = megatron_tp_layer(B, S, H)
    assert expected == {"forward": [B * S * H] * 2, "backward": [B * S * H] * 2}
    itemsize = {"forward": 2, "backward": 4}
    for i in range(L):
        for phase in ("forward", "backward"):
            got = sorted(c.bytes for c in traced(p) if c.kind == "all_reduce" and c.phase == phase
                         and c.module.startswith(f"model.layers.{i}."))
            assert got == [n * itemsize[phase] for n in expected[phase]], (i, phase)
    outside = [c for c in traced(p) if not c.module.startswith("model.layers.")]
    # the embedding's all-reduce (b·s·h, float32), the logits' all-gather (b·s·V, bf16), lm_head's input
    # gradient (b·s·h, float32)
    assert sorted((c.phase, c.kind, c.bytes) for c in outside) == sorted(
        [("forward", "all_reduce", B * S * H * 4), ("forward", "all_gather", B * S * V * 2),
         ("backward", "all_reduce", B * S * H * 4)])
    assert {c.size for c in traced(p)} == {2} and {c.group for c in traced(p)} == {"tp"}


def test_fsdp2_pads_every_parameter_to_a_multiple_of_the_shard_group_along_dim_0():
    n, vocab = 4, 130                     # 130 rows of the embedding and the LM head: ⌈130/4⌉ = 33 rows each
    p = plan(lambda: tiny(vocab), cluster=f"{n}xH100", fsdp=True, batch=B, seq_len=S, compute_dtype=None)
    shapes = [tuple(t.shape) for t in tiny(vocab).parameters()]
    assert fsdp_shard_numel((130, H), n) == 33 * H
    per_rank = sum(fsdp_shard_numel(s, n) for s in shapes)         # Σ ⌈dim0/n⌉ · (numel / dim0)
    assert p.params_rank == per_rank
    assert p.memory.largest["parameters"] == per_rank * 4           # float32
    # each layer's forward all-gather carries its padded parameters, ⌈dim0/n⌉·n rows each (float32 here)
    layer = [s for name, s in zip([n_ for n_, _ in tiny(vocab).named_parameters()], shapes) if ".layers.0." in name]
    gathers = [c.bytes for c in traced(p) if c.kind == "all_gather" and c.phase == "forward"
               and c.module == "model.layers.0"]
    assert gathers == [sum(fsdp_shard_numel(s, n) * n for s in layer) * 4]


def test_zero_bytes_per_parameter_match_rajbhandari_et_al():
    n = 4
    # mixed-precision Adam: 2 (fp16 parameter) + 2 (its gradient) + K = 12 (fp32 copy, two moments)
    assert zero_bytes_per_param(0, n) == 2 + 2 + 12
    assert zero_bytes_per_param(1, n) == 2 + 2 + 12 / n
    assert zero_bytes_per_param(2, n) == 2 + (2 + 12) / n
    assert zero_bytes_per_param(3, n) == (2 + 2 + 12) / n
    params = sum(t.numel() for t in tiny().parameters())
    tensors = len(list(tiny().parameters()))
    # FSDP2 with bf16 compute keeps fp32 shards: 4 (parameter, the master copy) + 4 (gradient) + 8 (two
    # moments) = 16 = 2 + 2 + 12 bytes per parameter over n, as ZeRO-3. Every dim 0 of the tiny Llama
    # divides by 4, so there is no padding; AdamW adds one 4-byte step count per parameter tensor
    p = tiny_plan(cluster=f"{n}xH100", fsdp=True)
    state = p.memory.largest
    assert state["parameters"] + state["gradients"] == (4 + 4) * params / n
    assert state["optimizer state"] == 8 * params / n + 4 * tensors
    assert (state["parameters"] + state["gradients"] + state["optimizer state"] - 4 * tensors) / params \
        == zero_bytes_per_param(3, n)
    # ZeRO-1 and -2 are modelled on the step without a data-parallel wrapper: fp32 parameters and
    # gradients whole, the optimizer state (and for stage 2 the gradients) divided by n
    one, two = tiny_plan(cluster=f"{n}xH100", zero=1), tiny_plan(cluster=f"{n}xH100", zero=2)
    assert one.memory.largest["optimizer state"] == int((8 * params + 4 * tensors) / n)
    assert one.memory.largest["gradients"] == 4 * params
    assert two.memory.largest["gradients"] == int(4 * params / n)


def test_data_parallel_gradients_go_in_ddps_buckets():
    mib = 1 << 20
    # the first bucket closes on reaching 1 MiB, the next on reaching 25 MiB (10 + 20 MiB), the rest is a last one
    assert buckets([mib // 2, mib // 2, 10 * mib, 20 * mib, 3]) == [mib, 30 * mib, 3]
    p = tiny_plan(cluster="4xH100", zero=0)
    params = sum(t.numel() for t in tiny().parameters())
    modelled = [c for c in p.collectives if c.source == "modelled"]
    # 362 KB of float32 gradients: one bucket, all-reduced once over the 4 data-parallel ranks
    assert [(c.kind, c.size, c.bytes) for c in modelled] == [("all_reduce", 4, 4 * params)]


def test_llama_forward_macs_are_the_closed_form_and_tensor_parallelism_divides_them():
    # per layer: q and o (h·h each), k and v (h·h_kv each), gate, up and down (h·I each) per token, the
    # attention scores and the weighted sum (s·h each per token, the causal mask counted in full);
    # the LM head h·V per token
    kv = H // HEADS * KV
    layer = B * S * (2 * H * H + 2 * H * kv + 3 * H * I) + 2 * B * S * S * H
    forward = L * layer + B * S * H * V
    one, two = tiny_plan(cluster="2xH100", fsdp=True), tiny_plan(tp=2)
    assert one.flops_by_phase["forward"] == 2 * forward
    assert two.flops_by_phase["forward"] == 2 * forward // 2
    full = tiny_plan(fsdp=True, recompute="full")
    # every decoder layer's forward again but its last matmul: non-reentrant checkpointing stops the
    # recompute once the tensors backward needs are back, and the down projection's output is not one
    assert full.flops_by_phase["recompute"] == 2 * L * (layer - B * S * I * H)
    assert full.flops_by_phase["forward"] == one.flops_by_phase["forward"]


def test_step_time_is_compute_plus_each_collective_on_the_stated_cost_model():
    p = tiny_plan(cluster="8xH100:2", tp=2, fsdp=True)
    cluster = p.cluster
    assert (cluster.world, cluster.intra_bandwidth, cluster.network_bandwidth) == (16, 450e9, 50e9)
    for c, seconds, link in p.time.comm_items:
        n, size = c.size, c.bytes
        spans = len({r // 8 for r in c.ranks}) > 1
        bandwidth, latency = (50e9, 10e-6) if spans else (450e9, 5e-6)
        # ring: all-reduce 2(n−1)/n·S/B + 2(n−1)α; all-gather and reduce-scatter (n−1)/n·S/B + (n−1)α
        factor, steps = (2 * (n - 1) / n, 2 * (n - 1)) if c.kind == "all_reduce" else ((n - 1) / n, n - 1)
        assert seconds == pytest.approx(factor * size / bandwidth + steps * latency)
        assert link == ("network" if spans else "NVLink 4")
    dp_groups = {c.ranks for c in traced(p) if c.group == "dp"}
    assert dp_groups == {tuple(range(0, 16, 2))}              # TP innermost: dp ranks 0, 2, …, 14 span both nodes
    assert p.time.no_overlap == pytest.approx(p.time.compute + sum(s for _, s, _ in p.time.comm_items))
    # the schedule hides FSDP2's collectives where it can; the TP ones stay on the compute stream
    tp = sum(s for c, s, _ in p.time.comm_items if c.group == "tp")
    assert p.time.compute + tp <= p.step_s * (1 + 1e-9) and p.step_s <= p.time.no_overlap * (1 + 1e-9)
    assert p.tokens == B * p.dp * S
    assert p.tokens_per_s == pytest.approx(p.tokens / p.step_s)
    peak = cluster.device.matrix["bf16"]
    assert p.mfu == pytest.approx((p.flops_by_phase["forward"] + p.flops_by_phase["backward"]) / (p.step_s * peak))
    assert collective_time("all_reduce", 10**9, 1, 1e9, 1.0) == 0.0


def test_the_schedule_overlaps_side_streams_with_compute_as_issued():
    from flopmeter.analyses.parallel.estimate import Task, schedule
    tasks = [Task(1.0, "all_gather", writes=(1,)),          # layer 0's all-gather: 0 → 1
             Task(0.5, reads=(1,), writes=(2,), copy_out=True),   # its copy-out waits for it: 1 → 1.5
             Task(4.0, "all_gather", writes=(3,)),          # layer 1's: after the copy-out, beside compute: 1.5 → 5.5
             Task(2.0, reads=(2,)),                         # layer 0's compute: 1.5 → 3.5
             Task(1.0, "reduce_scatter"),                   # after the compute issued before it: 3.5 → 4.5
             Task(0.5, reads=(3,)),                         # layer 1's copy-out waits for its all-gather: 5.5 → 6
             Task(1.0, "reduce_scatter", after=0.0)]        # a modelled bucket: its stream is free at 4.5 → 5.5
    end, busy = schedule(tasks)
    assert end == 6.0 and busy == {"compute": 3.0, "all_gather": 5.0, "reduce_scatter": 2.0}


def test_memory_peak_is_the_sum_of_its_kinds_and_fits_against_usable_memory():
    from flopmeter.devices import usable_memory
    p = tiny_plan(fsdp=True)
    assert p.memory.peak == sum(p.memory.by_kind.values())
    assert p.memory.usable == usable_memory("h100").usable and p.memory.fits
    assert p.memory.by_kind["unsharded parameters"] > 0 and p.memory.phase in ("forward", "backward", "optimizer")
    assert not plan(tiny, cluster="2xH100", fsdp=True, batch=B, seq_len=S, reserve=80 * 2**30).memory.fits


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, error, hint", [
    ({"cluster": "3xH100", "tp": 3}, "does not divide the model's attention heads (8)", "e.g."),
    ({"cluster": "8xH100", "tp": 3}, "does not factor into tp×dp", "choose a tp that divides 8"),
    ({"cluster": "8xH900"}, "unknown device 'H900'", "did you mean"),
    ({"cluster": "H100"}, "cannot read the cluster", "8xH100:4"),
    ({"pp": 2}, "not supported yet", "--pp 1"),
    ({"cluster": "2xH100", "tp": 2, "dp": 2}, "is not the world size 2", "leave --dp out"),
    ({"sp": True}, "tp is 1", "--tp 2"),
])
def test_bad_plans_are_refused_with_a_hint(options, error, hint):
    with pytest.raises((OptionsError, InputError)) as info:
        plan(tiny, batch=B, seq_len=S, **options)
    assert error in str(info.value) and hint in info.value.hint


def test_a_model_without_a_tensor_parallel_plan_is_refused():
    with pytest.raises(InputError, match="no built-in tensor-parallel plan for Sequential") as info:
        plan(lambda: torch.nn.Sequential(torch.nn.Embedding(8, 4), torch.nn.Linear(4, 8)), cluster="2xH100", tp=2)
    assert "Llama family" in info.value.hint
    with pytest.raises(InputError, match="give a function that builds it"):
        plan(tiny(), cluster="2xH100")
    with pytest.raises(InputError, match="is a Hugging Face config") as info:
        plan("torchvision:resnet18", cluster="2xH100")
    assert "a function that builds the model" in info.value.hint
    from torch.distributed.tensor.parallel import ColwiseParallel
    with pytest.raises(InputError, match="entry 'model.no_such_module' matches no module"):
        plan(tiny, cluster="2xH100", tp=2, tp_plan={"model.no_such_module": ColwiseParallel()})
    with pytest.raises(InputError, match="PyTorch could not parallelize LlamaForCausalLM: NotImplementedError"):
        plan(tiny, cluster="2xH100", tp=2, tp_plan={"model.norm": ColwiseParallel()})
    assert PlanConfig(cluster="8xH100:4").parsed_cluster().world == 32
    assert parse_cluster("4 x A100 : 2").describe() == "2 × 4 A100 80GB"


def test_a_users_tensor_parallel_plan_is_applied_to_a_model_of_their_own():
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
    p = plan(lambda: torch.nn.Sequential(torch.nn.Embedding(V, H), torch.nn.Linear(H, I), torch.nn.Linear(I, V)),
             cluster="2xH100", tp=2, tp_plan={"1": ColwiseParallel(), "2": RowwiseParallel()}, batch=B, seq_len=S,
             compute_dtype=None)
    # Megatron's MLP: the row-wise output all-reduced in the forward (b·s·V), the column-wise input's
    # gradient in the backward (b·s·h), float32
    assert sorted((c.phase, c.kind, c.bytes) for c in traced(p)) == [("backward", "all_reduce", B * S * H * 4),
                                                                      ("forward", "all_reduce", B * S * V * 4)]
    assert p.params_rank == V * H + (H * I + I) // 2 + I * V // 2 + V     # the embedding and the last bias whole


def test_dtensors_sharding_propagation_is_not_recorded_as_part_of_the_step():
    # DTensor runs each new op schema once on global-shape fakes of the active fake mode to learn its
    # output's metadata, then caches it: with the caches cleared, the first plan must record the same
    # ops (and FLOPs) as a second one that finds them warm
    from torch.distributed.tensor import DTensor
    propagator = DTensor._op_dispatcher.sharding_propagator
    propagator.propagate_op_sharding.cache_clear()
    propagator._propagate_tensor_meta_cached.cache_clear()
    cold, warm = tiny_plan(tp=2, sp=True), tiny_plan(tp=2, sp=True)
    assert [ev.op for ev in cold.report.trace.events] == [ev.op for ev in warm.report.trace.events]
    assert cold.flops_by_phase == warm.flops_by_phase and cold.memory.peak == warm.memory.peak


class Broken(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, ids):
        raise RuntimeError("the model's own error")


def test_a_failing_step_is_one_error_and_a_plan_leaves_no_process_group_or_fake_mode():
    import torch.distributed as dist
    from torch._guards import detect_fake_mode
    with pytest.raises(ModelForwardError, match="the model's own error") as info:
        plan(Broken, cluster="2xH100", seq_len=4)
    assert "forward" in str(info.value) and info.value.hint
    assert not dist.is_initialized() and detect_fake_mode() is None
    tiny_plan(tp=2, sp=True)
    assert not dist.is_initialized() and detect_fake_mode() is None


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = tiny().config.to_dict()
    config.update(torch_dtype="float32", architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    return f"hf:{folder}"


@pytest.mark.parametrize("argv, error", [
    (["--cluster", "3xH100", "--tp", "3"], "does not divide the model's attention heads"),
    (["--cluster", "8xH100", "--tp", "3"], "does not factor into tp×dp"),
    (["--cluster", "8xQ100"], "unknown device 'Q100'"),
    (["--pp", "2"], "pipeline parallelism (pp=2) is not supported yet"),
    (["--fsdp", "--zero", "1"], "--fsdp is ZeRO stage 3"),
    (["--reserve", "lots"], "cannot read the reserve"),
])
def test_the_command_line_refuses_bad_plans_with_one_error_and_a_hint(capsys, tiny_config, argv, error):
    assert main(["plan", tiny_config, "--seq-len", "16", *argv]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 2 and error in lines[0] and lines[0].startswith("error: ")
    assert lines[1].startswith("hint: ") and "Traceback" not in err


def test_the_command_line_refuses_tensor_parallelism_for_a_model_without_a_plan(capsys):
    assert main(["plan", "hf:gpt2", "--cluster", "2xH100", "--tp", "2", "--seq-len", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: no built-in tensor-parallel plan for GPT2LMHeadModel" and len(err) == 2
    assert err[1].startswith("hint: tensor parallelism is built in for the Llama family")


def test_the_command_line_plans_a_hugging_face_config(capsys, tiny_config, tmp_path):
    argv = ["plan", tiny_config, "--cluster", "4xA100", "--tp", "2", "--fsdp", "--sp", "--recompute", "full",
            "--batch", str(B), "--seq-len", str(S), "--optimizer", "adam", "--dtype", "float32",
            "--compute-dtype", "bfloat16", "--network-bandwidth", "25", "--latency", "2", "--reserve", "1GiB",
            "--format", "json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["parallelism"] == {"world": 4, "dp": 2, "tp": 2, "pp": 1, "zero": 3, "sp": True, "recompute": "full"}
    assert d["cluster"]["device"] == "A100 80GB" and d["cluster"]["network_bandwidth"] == 25e9
    assert d["cluster"]["latency_intra_s"] == pytest.approx(2e-6) and d["memory"]["reserve_bytes"] == 2**30
    assert d["step"] == {"batch_per_dp_rank": B, "seq_len": S, "global_batch": 2 * B, "tokens": 2 * B * S,
                         "dtype": "float32", "compute_dtype": "bfloat16", "optimizer": "adam"}
    assert d["flops_by_phase"]["recompute"] > 0 and {r["group"] for r in d["collectives"]} == {"dp", "tp"}
    assert main(["plan", tiny_config, "--cluster", "2xH100", "--dp", "2", "--zero", "2", "--seq-len", str(S),
                 "--compute-dtype", "same", "--pp", "1"]) == 0
    out = capsys.readouterr().out
    assert "ZeRO-2" in out and "modelled" in out and "Collectives of one step" in out
    assert main(["plan", tiny_config, "--cluster", "2xH100", "--seq-len", str(S), "-o", str(tmp_path / "p.md")]) == 0
    assert (tmp_path / "p.md").read_text().startswith("**model**")
    assert main(["plan", tiny_config, "--cluster", "2xH100", "--seq-len", str(S), "--format", "csv", "--raw"]) == 0
    assert capsys.readouterr().out.startswith("phase,collective,group")

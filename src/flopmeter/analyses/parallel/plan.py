"""``plan(model, …)``: one training step of the parallelized model, traced as rank 0 runs it on a
fake process group, with its memory, collectives and predicted time.

The steps: build the model on the meta device (from a SPEC such as ``hf:llama-7b``, or from a
function that builds it), parallelize it with PyTorch's own APIs (:mod:`.program`), give it
fake storage, record a steady-state training step (:mod:`.record`), cost it with flopmeter's
formulas, and read off memory by kind (:mod:`.memory`), the collectives (:mod:`.collectives`,
plus the modelled data-parallel ones of :mod:`.closed_forms`) and the step time
(:mod:`.estimate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ...cost import Cost
from ...devices import usable_memory
from ...errors import FlopmeterError, InputError, expect_type
from ...formulas import REGISTRY
from ...report import Report, build_report
from ...trace.run import _RUN_LOCK, gc_paused
from ...trace.training import make_optimizer
from . import closed_forms
from .cluster import Cluster
from .collectives import KINDS, Collective, Groups, collectives, summary
from .config import PlanConfig
from .estimate import StepTime, model_flops, peak_flops, step_time
from .memory import MemoryTimeline, timeline
from .program import Parallelism, build_mesh, fake_world, parallelize
from .record import PlanFakeMode, StepRecord, local, record_step, warm_optimizer
from .tp import llama_like

_COPIES = ("fsdp.all_gather_copy_in", "fsdp.split_with_sizes_copy", "fsdp.chunk_cat")
_SYNC = ("_c10d_functional.wait_tensor", "c10d.barrier", "c10d.monitored_barrier_")


def plan_registry():
    """flopmeter's formulas with the collectives free of compute (the cost model times them) and
    FSDP2's copy ops costed as the bytes they move."""
    registry = REGISTRY.copy()
    for name in (*KINDS, *_SYNC):
        registry.override(name, None)
    for name in _COPIES:
        registry.override(name, _copy)
    return registry


def _copy(ev) -> Cost:
    return Cost()


@dataclass
class MemoryPlan:
    """Memory of one rank at the step's peak, by kind (bytes)."""

    peak: int
    by_kind: dict[str, int]
    phase: str                        # the phase the peak falls in
    module: str                       # the module running at the peak
    before_step: int                  # live before the step starts (parameters, optimizer state, …)
    usable: int
    total: int
    reserve: int
    reserve_note: str
    modelled: dict[str, str] = field(default_factory=dict)     # kind → how an analytic stage changed it
    largest: dict[str, int] = field(default_factory=dict)      # kind → its most bytes at any point of the step

    @property
    def fits(self) -> bool:
        return self.peak <= self.usable

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak, "by_kind": dict(self.by_kind), "phase": self.phase, "module": self.module,
                "before_step_bytes": self.before_step, "usable_bytes": self.usable, "total_bytes": self.total,
                "reserve_bytes": self.reserve, "reserve_note": self.reserve_note, "fits": self.fits,
                "modelled": dict(self.modelled), "largest_by_kind": dict(self.largest)}


@dataclass
class Plan:
    model: str
    config: PlanConfig
    cluster: Cluster
    dp: int
    tp: int
    report: Report                     # rank 0's step, costed
    collectives: list[Collective]
    memory: MemoryPlan
    time: StepTime
    params_total: int                  # parameters of the whole model
    params_rank: int                   # elements of rank 0's parameter storages (padding included)
    tokens: int                        # tokens of one step over all ranks
    mfu: float
    hfu: float
    notes: list[str]
    seconds: dict[str, float]          # how long the plan itself took (build, parallelize, trace, cost)
    timeline: MemoryTimeline = field(repr=False, default=None)

    @property
    def world(self) -> int:
        return self.dp * self.tp

    @property
    def step_s(self) -> float:
        """The predicted step time: the traced ops on the schedule of :mod:`.estimate`."""
        return self.time.scheduled

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_s if self.step_s else float("inf")

    @property
    def flops_by_phase(self) -> dict[str, int]:
        return {p: c.flops("dot") for p, c in self.report.by_phase.items()}

    def collective_rows(self):
        return summary(self.collectives)

    def to_dict(self) -> dict:
        c = self.config
        return {"schema": "flopmeter.plan/1", "model": self.model,
                "cluster": self.cluster.to_dict(),
                "parallelism": {"world": self.world, "dp": self.dp, "tp": self.tp, "pp": c.pp, "zero": c.stage,
                                "sp": c.sp, "recompute": c.recompute},
                "step": {"batch_per_dp_rank": c.batch, "seq_len": c.seq_len, "global_batch": c.batch * self.dp,
                         "tokens": self.tokens, "dtype": c.dtype, "compute_dtype": str(c.compute).removeprefix("torch."),
                         "optimizer": c.optimizer},
                "params": {"total": self.params_total, "per_rank": self.params_rank},
                "memory": self.memory.to_dict(),
                "flops_by_phase": self.flops_by_phase,
                "collectives": [r.to_dict() for r in self.collective_rows()],
                "time": {**self.time.to_dict(), "step_s": self.step_s,
                         "overlap": "scheduled: FSDP2's all-gathers and reduce-scatters (and modelled data-parallel "
                                    "collectives) on their own streams as the traced order issues them, DTensor's "
                                    "collectives on the compute stream; no_overlap: everything in sequence"},
                "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
                "unsupported_ops": dict(self.report.unsupported), "notes": list(self.notes),
                "plan_seconds": dict(self.seconds)}


def _build(model, config: PlanConfig) -> tuple[str, nn.Module]:
    """(name, the model on the meta device, in the plan's parameter dtype)."""
    if isinstance(model, str):
        if not model.startswith("hf:"):
            raise InputError(f"a plan's SPEC is a Hugging Face config (hf:NAME or hf:path/config.json), not '{model}'",
                             hint="from Python, give flopmeter.plan a function that builds the model")
        from ...frontends import InputRequest, resolve
        resolved = resolve(model, InputRequest(dtype=config.param_dtype, seq_len=config.seq_len, batch=config.batch,
                                               training=True))
        return resolved.name, resolved.model
    if isinstance(model, nn.Module):
        raise InputError("plan() parallelizes its own copy of the model: give a function that builds it, or a SPEC",
                         hint="e.g. flopmeter.plan(lambda: MyModel(config), …) or flopmeter.plan('hf:llama-7b', …)")
    if not callable(model):
        expect_type(model, str, "plan(model)", "a SPEC string or a function that builds the model")
    with torch.device("meta"):
        built = model()
    if not isinstance(built, nn.Module):
        raise InputError(f"the model function returned {type(built).__name__}, not a torch.nn.Module",
                         hint="return the module the function builds")
    return getattr(model, "__name__", type(built).__name__), built.to(config.param_dtype)


@gc_paused
def plan(model: str | Callable[[], nn.Module], config: PlanConfig | None = None, *, tp_plan: dict | None = None,
         **options) -> Plan:
    """Plan one training step of ``model`` (a SPEC such as ``"hf:llama-7b"`` or a function that
    builds the module) under ``config`` (a :class:`PlanConfig`, or its fields as keywords:
    ``cluster="8xH100:4", tp=8, fsdp=True, batch=1, seq_len=4096``). ``tp_plan`` replaces the
    built-in Llama-family tensor-parallel plan: {module path: ParallelStyle} as
    ``parallelize_module`` takes it."""
    if config is None:
        config = PlanConfig(**options)
    elif options:
        raise InputError("give a PlanConfig or its fields as keywords, not both", hint="e.g. plan(spec, tp=2)")
    expect_type(config, PlanConfig, "plan(config)", "a flopmeter PlanConfig")
    return finish(trace_step(model, config, tp_plan=tp_plan), config)


@dataclass
class TracedStep:
    """What tracing one configuration gives, before the ZeRO stage's modelled parts are added:
    everything :func:`finish` needs. Configurations with the same :func:`trace_key` share it."""

    name: str
    key: tuple
    dp: int
    tp: int
    record: StepRecord
    report: Report
    traced: list[Collective]
    series: MemoryTimeline
    dp_group: tuple[int, ...]
    local_numels: list[int]
    params_total: int
    foreach: bool
    seconds: dict[str, float]


def trace_key(config: PlanConfig) -> tuple:
    """What the traced per-rank program depends on. ZeRO stages 0, 1 and 2 trace the same step
    (no data-parallel wrapper: their collectives and sharded memory are modelled afterwards), so the
    stage enters only as FSDP2 or not; the data-parallel degree enters through the mesh (FSDP2's
    shard sizes, the modelled collectives' group)."""
    dp, tp = config.degrees()
    return (config.cluster, dp, tp, config.stage == 3, config.sp, config.recompute, config.batch, config.seq_len,
            config.dtype, config.compute_dtype, config.optimizer)


def trace_step(model, config: PlanConfig, *, tp_plan: dict | None = None) -> TracedStep:
    """Build, parallelize and trace one step of ``model`` under ``config`` (see :func:`plan`)."""
    dp, tp = config.degrees()
    seconds = {}
    start = time.perf_counter()
    name, built = _build(model, config)
    if tp > 1 and tp_plan is None and not llama_like(built):
        raise InputError(f"no built-in tensor-parallel plan for {type(built).__name__}",
                         hint="tensor parallelism is built in for the Llama family (Llama, Mistral, Qwen2); use "
                              "--tp 1, or give plan(tp_plan={path: ParallelStyle}) from Python")
    seconds["build"] = time.perf_counter() - start
    fsdp = config.stage == 3
    mixed = config.compute != config.param_dtype
    how = Parallelism(tp=tp, sp=config.sp, fsdp=fsdp, recompute=config.recompute, tp_plan=tp_plan,
                      param_dtype=config.compute if fsdp and mixed else None,
                      reduce_dtype=config.param_dtype if fsdp and mixed else None)
    with _RUN_LOCK, fake_world(dp * tp):
        start = time.perf_counter()
        meshes = build_mesh(dp, tp)
        built.train()
        try:
            parallelize(built, meshes, how)
        except FlopmeterError:
            raise
        except Exception as exc:            # PyTorch refusing the plan for this model (a user's tp_plan, say)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"PyTorch could not parallelize {type(built).__name__}: {type(exc).__name__}: "
                             f"{first[:300]}", hint="check the tensor-parallel plan against the model's module "
                                                    "names; add --debug for the traceback") from exc
        seconds["parallelize"] = time.perf_counter() - start
        start = time.perf_counter()
        mode = PlanFakeMode(allow_non_fake_inputs=True)
        with mode:
            built.to_empty(device="cpu")
            params = [p for p in built.parameters() if p.requires_grad]
            foreach = _foreach_possible(params)
            optimizer = make_optimizer(config.optimizer, params, torch.device("cuda" if foreach else "cpu"))
            warm_optimizer(optimizer, params)
            ids = torch.zeros(config.batch, config.seq_len, dtype=torch.long)
        amp = torch.autocast("cpu", dtype=config.compute) if mixed and not fsdp else None
        record = record_step(built, mode, ids, optimizer, amp=amp)
        traced = collectives(record.trace.events, Groups(meshes))
        dp_group = tuple(meshes.mesh.mesh[:, 0].tolist()) if dp > 1 else (0,)
        seconds["trace"] = time.perf_counter() - start
        params_total = sum(p.numel() for p in built.parameters())
        local_numels = [local(p).numel() for p in built.parameters()]
    start = time.perf_counter()
    report = build_report(record.trace, registry=plan_registry())
    report.model = name
    series = timeline(record.trace, record.kinds, record.resizes)
    seconds["cost"] = time.perf_counter() - start
    return TracedStep(name, trace_key(config), dp, tp, record, report, traced, series, dp_group, local_numels,
                      params_total, foreach, seconds)


def finish(step: TracedStep, config: PlanConfig) -> Plan:
    """The plan of ``config`` from a traced step of the same :func:`trace_key`: the ZeRO stage's
    modelled collectives and memory, the step time and MFU."""
    if trace_key(config) != step.key:
        raise InputError("this traced step is of another configuration", hint="trace the configuration itself")
    start = time.perf_counter()
    cluster = config.parsed_cluster()
    dp, tp, report, record = step.dp, step.tp, step.report, step.record
    itemsize = config.param_dtype.itemsize
    modelled = closed_forms.data_parallel(config.stage, [n * itemsize for n in step.local_numels],
                                          [n * itemsize for n in step.local_numels],
                                          str(config.param_dtype).removeprefix("torch."), step.dp_group)
    items = step.traced + modelled
    memory = _memory(record, step.series, config, cluster, dp)
    timing = step_time(report, items, cluster)
    seconds = {**step.seconds, "cost": step.seconds["cost"] + time.perf_counter() - start}
    peak, _ = peak_flops(cluster, config.compute)
    flops = model_flops(report)
    mfu = flops / (timing.scheduled * peak) if timing.scheduled else 0.0
    hfu = model_flops(report, with_recompute=True) / (timing.scheduled * peak) if timing.scheduled else 0.0
    params_rank = sum(record.trace.storages[s].nbytes for s in record.kinds["parameters"] if s >= 0) // itemsize
    mixed, fsdp = config.compute != config.param_dtype, config.stage == 3
    notes = _notes(config, cluster, dp, tp, mixed, fsdp)
    if not step.foreach:
        notes.append("the optimizer runs per parameter (foreach=False): PyTorch's foreach kernels refuse a mix "
                     "of DTensor and plain parameters (tensor parallelism without FSDP2)")
    return Plan(step.name, config, cluster, dp, tp, report, items, memory, timing, step.params_total, params_rank,
                config.batch * dp * config.seq_len, mfu, hfu, notes, seconds, step.series)


def _foreach_possible(params: list[torch.Tensor]) -> bool:
    """Whether the optimizer can take PyTorch's CUDA default (foreach): not when DTensor and plain
    parameters mix, which its foreach kernels refuse."""
    from torch.distributed.tensor import DTensor
    kinds = {isinstance(p, DTensor) for p in params}
    return len(kinds) <= 1


def _memory(record: StepRecord, series: MemoryTimeline, config: PlanConfig, cluster: Cluster, dp: int) -> MemoryPlan:
    scale: dict[str, float] = {}
    extra: dict[str, int] = {}
    modelled: dict[str, str] = {}
    stage = config.stage
    if stage in (1, 2):
        scale["optimizer state"] = 1 / dp
        modelled["optimizer state"] = f"traced unsharded, divided by dp={dp} (ZeRO-{stage}, modelled)"
    if stage == 2:
        scale["gradients"] = 1 / dp
        modelled["gradients"] = f"traced unsharded, divided by dp={dp} (ZeRO-2, modelled)"
    if stage == 0 and dp > 1:
        grads = max(series.series["gradients"]) if series.phases else 0
        extra["communication buffers"] = grads
        modelled["communication buffers"] = "DDP's gradient buckets: a copy of the gradients (modelled)"
    index = series.peak_index(scale, extra)
    by_kind = series.at(index, scale, extra) if series.phases else {}
    use = usable_memory(cluster.device, config.reserve)
    events = record.trace.events
    first = series.at(0, scale, extra) if series.phases else {}
    before = sum(v for k, v in first.items() if k in ("parameters", "optimizer state", "buffers", "inputs",
                                                       "communication buffers"))
    largest = {k: max((int(v * scale.get(k, 1.0)) for v in values), default=0) + extra.get(k, 0)
               for k, values in series.series.items()}
    return MemoryPlan(sum(by_kind.values()), by_kind, events[index].phase if events else "",
                      events[index].module if events else "", before, use.usable, use.total, use.reserve,
                      use.reserve_note, modelled, largest)


def _notes(config: PlanConfig, cluster: Cluster, dp: int, tp: int, mixed: bool, fsdp: bool) -> list[str]:
    notes = [(f"traced as rank 0 of {dp * tp} on a fake process group; every rank runs the same program "
             "(FSDP2's padded shards make the storages of every rank the same size)"),
             ("the step is traced with CPU kernels (autograd needs its device present); FLOPs do not depend on "
             "it, and attention's memory is that of PyTorch's CPU flash kernel"),
             (f"collectives: ring algorithms, {cluster.intra_link} {cluster.intra_bandwidth / 1e9:g} GB/s per "
             f"direction inside a node, network {cluster.network_bandwidth / 1e9:g} GB/s per GPU across nodes, "
             f"latency {cluster.latency_intra * 1e6:g}/{cluster.latency_inter * 1e6:g} µs per step"),
             ("step time: the traced ops on a GPU's streams — FSDP2's all-gathers and reduce-scatters beside "
              "compute as the traced order issues them, tensor-parallel collectives on the compute stream; "
              "'no overlap' runs everything in sequence (an upper bound)"),
             ("compute: datasheet peaks on the roofline, no kernel launch overhead; memory: allocator "
             "fragmentation is not modelled (the reserve covers the CUDA context and workspaces)")]
    if mixed:
        how = "FSDP2 MixedPrecisionPolicy" if fsdp else "torch.autocast"
        notes.append(f"mixed precision by {how}: parameters and optimizer state in {config.dtype}, compute in "
                     f"{str(config.compute).removeprefix('torch.')}")
    if config.stage in (0, 1, 2) and dp > 1:
        notes.append(f"data parallelism (ZeRO-{config.stage}) is modelled, not traced: DDP's reducer calls the "
                     "process group from C++, and fully_shard is ZeRO-3 only; the step is traced without a "
                     "data-parallel wrapper and its gradient collectives are added by the closed forms")
    return notes


__all__ = ["MemoryPlan", "Plan", "TracedStep", "finish", "plan", "plan_registry", "trace_key", "trace_step"]

"""``search(model, cluster=…)``: every configuration of a cluster that divides the model, planned,
ranked by predicted step time, with each rejected one's reason.

The configurations (pipeline parallelism aside): a tensor-parallel degree ``tp`` among the
divisors of the world size up to a node's GPUs, the data-parallel degree the rest
(``dp = world / tp``), the ZeRO stage (0 DDP, 1, 2 modelled; 3 FSDP2), sequence parallelism on or
off (with ``tp > 1``), recompute ``none`` or ``full``, and a micro-batch from a small list.

Traced once, used many times — exact, because the per-rank program is the same:

- ZeRO stages 0, 1 and 2 of one (tp, sp, recompute, batch) trace one step. The plan traces them
  without a data-parallel wrapper (DDP's reducer calls the process group outside the dispatcher;
  ``fully_shard`` is stage 3 only), so the stage changes only what :func:`.plan.finish` adds
  afterwards: the modelled collectives and the division of optimizer state (and gradients) by dp.
  Each is finished from the one trace, as :func:`.plan.plan` would finish it (:func:`.plan.trace_key`
  names what a trace depends on; a test checks a reused plan against a fresh one).
- FSDP2 (stage 3) traces its own step: its shard sizes and all-gathers depend on dp.

Rejected before any trace: a tp that does not divide the heads, key/value heads, hidden size,
MLP width or vocabulary; ZeRO 1–3 with dp = 1; tensor parallelism for a model with no plan.
Rejected after: a peak above the usable memory (where, and by how much), a step that fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import FlopmeterError, OptionsError, expect_type
from ...trace.run import gc_paused
from .config import PlanConfig
from .plan import _build, finish, trace_key, trace_step
from .tp import check_divisible, llama_like

BATCHES = (1, 2)
GIB = 2**30


@dataclass
class Candidate:
    """One configuration: its plan's figures, or why it was rejected (``reason``; None: it fits)."""

    config: PlanConfig
    reason: str | None = None
    traced: bool = False              # planned (a trace of its own or one shared)
    reused: bool = False              # finished from a trace made for another configuration
    trace: int = -1                   # which of the search's traces it came from
    step_s: float | None = None
    no_overlap_s: float | None = None
    peak: int | None = None
    usable: int | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    peak_phase: str = ""
    peak_module: str = ""
    mfu: float | None = None
    tokens_per_s: float | None = None
    compute_s: float | None = None
    comm_s: float | None = None

    @property
    def fits(self) -> bool:
        return self.reason is None and self.traced

    def label(self) -> str:
        c = self.config
        parts = [f"tp {c.tp}", f"dp {c.dp}", "FSDP2" if c.stage == 3 else f"ZeRO-{c.stage}"]
        parts += ["SP"] if c.sp else []
        parts += ["recompute"] if c.recompute == "full" else []
        return ", ".join(parts) + f", batch {c.batch}"

    def to_dict(self) -> dict:
        c = self.config
        return {"tp": c.tp, "dp": c.dp, "zero": c.stage, "sp": c.sp, "recompute": c.recompute, "batch": c.batch,
                "fits": self.fits, "reason": self.reason, "traced": self.traced, "reused_trace": self.reused,
                "trace": self.trace, "step_s": self.step_s, "step_no_overlap_s": self.no_overlap_s,
                "peak_bytes": self.peak, "usable_bytes": self.usable, "by_kind": dict(self.by_kind),
                "peak_phase": self.peak_phase, "peak_module": self.peak_module, "mfu": self.mfu,
                "tokens_per_s": self.tokens_per_s, "compute_s": self.compute_s, "communication_s": self.comm_s}


@dataclass
class SearchResult:
    model: str
    cluster: str
    world: int
    candidates: list[Candidate]       # every configuration, in the order searched
    traces: int                       # traces made
    seconds: float
    interrupted: bool = False

    @property
    def done(self) -> list[Candidate]:
        return [c for c in self.candidates if c.traced or c.reason is not None]

    @property
    def ranked(self) -> list[Candidate]:
        """The configurations that fit, fastest first (then the smaller peak)."""
        return sorted((c for c in self.candidates if c.fits), key=lambda c: (c.step_s, c.peak))

    @property
    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.reason is not None]

    def top(self, n: int = 10) -> list[Candidate]:
        return self.ranked[:n]

    def to_dict(self, top: int | None = None) -> dict:
        ranked = self.ranked if top is None else self.top(top)
        return {"schema": "flopmeter.plan-search/1", "model": self.model, "cluster": self.cluster, "world": self.world,
                "configurations": len(self.candidates), "evaluated": len(self.done), "traces": self.traces,
                "seconds": self.seconds, "interrupted": self.interrupted,
                "ranked": [c.to_dict() for c in ranked], "rejected": [c.to_dict() for c in self.rejected]}


def configurations(cluster: str, *, batches=BATCHES, seq_len: int = 2048, **fixed) -> list[PlanConfig]:
    """Every configuration of ``cluster`` (module docstring), in trace order: by tp, sp, recompute,
    batch, then ZeRO 0, 1, 2 (one trace) and 3. ``fixed``: the other PlanConfig fields."""
    base = PlanConfig(cluster=cluster, seq_len=seq_len, **fixed)
    parsed = base.parsed_cluster()
    world = parsed.world
    out = []
    for tp in (d for d in range(1, parsed.gpus_per_node + 1) if world % d == 0):
        for sp in ((False, True) if tp > 1 else (False,)):
            for recompute in ("none", "full"):
                for batch in batches:
                    for zero in (0, 1, 2, 3):
                        out.append(PlanConfig(cluster=cluster, tp=tp, dp=world // tp, zero=zero, sp=sp,
                                              recompute=recompute, batch=batch, seq_len=seq_len, **fixed))
    return out


def _refusal(config: PlanConfig, built, has_plan: bool) -> str | None:
    """Why ``config`` cannot run at all (before tracing), or None."""
    if config.tp > 1 and not has_plan:
        return f"no built-in tensor-parallel plan for {type(built).__name__}"
    if config.tp > 1:
        try:
            check_divisible(built, config.tp)
        except OptionsError as exc:
            return str(exc).removeprefix("--")
    try:
        config.degrees()
    except OptionsError as exc:
        return str(exc)
    return None


def _fill(cand: Candidate, p, trace: int, reused: bool) -> None:
    m = p.memory
    cand.traced, cand.reused, cand.trace = True, reused, trace
    cand.step_s, cand.no_overlap_s = p.step_s, p.time.no_overlap
    cand.peak, cand.usable, cand.by_kind = m.peak, m.usable, dict(m.by_kind)
    cand.peak_phase, cand.peak_module = m.phase, m.module
    cand.mfu, cand.tokens_per_s = p.mfu, p.tokens_per_s
    cand.compute_s, cand.comm_s = p.time.compute, p.time.comm
    if not m.fits:
        where = f"{m.phase} ({m.module or 'root'})"
        cand.reason = (f"does not fit: peak {m.peak / GIB:.2f} GiB per rank in {where} > usable "
                       f"{m.usable / GIB:.2f} GiB (by {(m.peak - m.usable) / GIB:.2f} GiB)")


def search(model, cluster: str = "8xH100", *, batches=BATCHES, seq_len: int = 2048,
           progress: Callable[[int, int, str], None] | None = None, **fixed) -> SearchResult:
    """Plan every configuration of ``cluster`` for ``model`` (a SPEC or a function that builds it;
    see :func:`.plan.plan`), reusing one trace where the per-rank program is the same (module
    docstring). ``batches``: the micro-batches (sequences per data-parallel rank) to try;
    ``fixed``: the other :class:`PlanConfig` fields (dtype, compute_dtype, optimizer, reserve, …).
    ``progress(done, total, what)`` is called before each trace and after each configuration.
    Ctrl-C (KeyboardInterrupt) stops the search and returns what was found, ``interrupted`` set."""
    expect_type(cluster, str, "search(cluster=…)", "a cluster such as '8xH100:4'")
    batches = tuple(batches)
    if not batches or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches):
        raise OptionsError(f"the micro-batches must be whole numbers of at least 1, not {batches!r}",
                           hint="e.g. batches=(1, 2, 4)")
    for name in ("tp", "dp", "zero", "fsdp", "sp", "recompute", "batch", "pp"):
        if name in fixed:
            raise OptionsError(f"search chooses {name} itself", hint=f"leave {name} out, or plan one configuration")
    started = time.perf_counter()
    configs = configurations(cluster, batches=batches, seq_len=seq_len, **fixed)
    name, built = _build(model, configs[0])
    has_plan = llama_like(built)
    cands = [Candidate(c, _refusal(c, built, has_plan)) for c in configs]
    groups: dict[tuple, list[Candidate]] = {}
    for cand in cands:
        if cand.reason is None:
            groups.setdefault(trace_key(cand.config), []).append(cand)
    total, done, traces, interrupted = len(cands), sum(c.reason is not None for c in cands), 0, False
    try:
        if progress is not None:
            progress(done, total, "")
        for members in groups.values():
            first = members[0]
            if progress is not None:
                progress(done, total, f"tracing {first.label().replace(', ZeRO-0', '')}")
            try:
                step = gc_paused(trace_step)(model, first.config)
            except FlopmeterError as exc:
                for cand in members:
                    cand.reason = f"the step failed: {exc}"
                done += len(members)
                continue
            traces += 1
            for i, cand in enumerate(members):
                _fill(cand, finish(step, cand.config), traces - 1, reused=i > 0)
                done += 1
                if progress is not None:
                    progress(done, total, cand.label())
            del step
    except KeyboardInterrupt:
        interrupted = True
    return SearchResult(name, cluster, configs[0].parsed_cluster().world, cands, traces,
                        time.perf_counter() - started, interrupted)


__all__ = ["BATCHES", "Candidate", "SearchResult", "configurations", "search"]

"""Predicted step time of one rank: compute on the device's roofline, collectives on the cluster's
links (:mod:`.cluster`), and how the two overlap on the traced schedule.

- compute: every costed op of the rank's step on :func:`flopmeter.bench.roofline.estimate_op`
  (max of FLOPs / peak for its dtype and bytes / memory bandwidth; datasheet peaks, no launch
  overhead);
- communication: each collective's time on the link its group spans;
- ``scheduled`` (the prediction): the traced ops replayed in order on three streams, as PyTorch
  issues them on a GPU whose host runs ahead (:func:`schedule`):

  - the compute stream runs every other op in order, an op starting once the tensors it reads
    are ready (a view launches no kernel and waits for nothing); DTensor's collectives (tensor parallelism) are on it: eager DTensor waits for
    each at once;
  - FSDP2's all-gather stream runs its copy-in and all-gather in order; a copy-in waits for the
    copy-out of the all-gather before it (the buffers are reused), not for compute;
  - the reduce-scatter stream runs FSDP2's gradient copy-in and reduce-scatter in order, each
    after the compute issued before it (``wait_stream``);
  - modelled data-parallel collectives (DDP, ZeRO-1/2) are issued on the reduce-scatter stream
    as backward produces their buckets (bucket k when backward's compute has gone as far as the
    share of gradient bytes in buckets 1..k), and the optimizer waits for them; ZeRO's
    parameter all-gathers run after the optimizer;
- ``no overlap`` (an upper bound): compute + every collective, one after the other.

MFU = model FLOPs of the step (forward and backward, no recompute; ``dot`` convention) / (step time ×
the device's dense peak for the compute dtype); HFU counts the recompute too. Tokens/s = global
batch × sequence length / step time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ...bench.roofline import estimate_op
from ...devices import dtype_key
from .cluster import Cluster, collective_time

_AG_STREAM = ("fsdp.all_gather_copy_in", "c10d._allgather_base_", "c10d.allgather_into_tensor_coalesced_",
              "c10d.allgather_")
_RS_STREAM = ("fsdp.chunk_cat", "c10d._reduce_scatter_base_", "c10d.reduce_scatter_tensor_coalesced_",
              "c10d.reduce_scatter_")
_COPY_OUT = "fsdp.split_with_sizes_copy"


@dataclass(frozen=True)
class Task:
    """One op on a stream: ``compute``, ``all_gather`` or ``reduce_scatter`` (see the module docstring)."""

    seconds: float
    stream: str = "compute"
    reads: tuple[int, ...] = ()       # storages it waits for
    writes: tuple[int, ...] = ()      # storages ready when it ends
    copy_out: bool = False            # an FSDP2 copy-out: the next all-gather copy-in waits for it
    after: float | None = None        # earliest start (a modelled collective's issue time)


def schedule(tasks) -> tuple[float, dict[str, float]]:
    """(when the last stream finishes, each stream's busy time) of ``tasks`` in issue order."""
    clock = {"compute": 0.0, "all_gather": 0.0, "reduce_scatter": 0.0}
    busy = dict.fromkeys(clock, 0.0)
    ready: dict[int, float] = {}
    copied_out = 0.0
    for t in tasks:
        start = max((ready.get(s, 0.0) for s in t.reads), default=0.0)
        if t.stream == "compute":
            start = max(start, clock["compute"])
        elif t.stream == "all_gather":
            start = max(start, clock["all_gather"], copied_out)
        else:                                   # FSDP2's: after the compute issued before it
            start = max(start, clock["reduce_scatter"], clock["compute"] if t.after is None else 0.0)
        if t.after is not None:
            start = max(start, t.after)
        end = start + t.seconds
        clock[t.stream] = end
        busy[t.stream] += t.seconds
        for s in t.writes:                      # a view made meanwhile does not make it ready sooner
            ready[s] = max(ready.get(s, 0.0), end)
        if t.copy_out:
            copied_out = end
    return max(clock.values()), busy


@dataclass
class StepTime:
    compute_by_phase: dict[str, float]
    comm_by_group: dict[str, float]
    scheduled: float
    comm_items: list[tuple[object, float, str]] = field(default_factory=list, repr=False)   # (collective, s, link)

    @property
    def compute(self) -> float:
        return sum(self.compute_by_phase.values())

    @property
    def comm(self) -> float:
        return sum(self.comm_by_group.values())

    @property
    def no_overlap(self) -> float:
        return self.compute + self.comm

    @property
    def exposed_comm(self) -> float:
        """Communication time the schedule does not hide behind compute."""
        return max(self.scheduled - self.compute, 0.0)

    def to_dict(self) -> dict:
        return {"compute_s": self.compute, "compute_by_phase_s": dict(self.compute_by_phase),
                "communication_s": self.comm, "communication_by_group_s": dict(self.comm_by_group),
                "step_scheduled_s": self.scheduled, "step_no_overlap_s": self.no_overlap,
                "exposed_communication_s": self.exposed_comm}


def step_time(report, items, cluster: Cluster) -> StepTime:
    device = cluster.device
    events = report.trace.events
    by_phase: dict[str, float] = defaultdict(float)
    op_seconds = [0.0] * len(events)
    for i, row in enumerate(report.ops):
        if row.status == "costed":
            op_seconds[i] = estimate_op(row, device, overhead=False).time_s
            by_phase[row.event.phase] += op_seconds[i]
    by_group: dict[str, float] = defaultdict(float)
    timed, modelled = [], []
    for c in items:
        link, bandwidth, latency = cluster.link_of(c.ranks)
        seconds = collective_time(c.kind, c.bytes, c.size, bandwidth, latency)
        by_group[c.group] += seconds
        timed.append((c, seconds, link))
        if c.event >= 0:
            op_seconds[c.event] = seconds
        else:
            modelled.append((c, seconds))
    free = [row.status == "free" for row in report.ops]
    return StepTime(dict(by_phase), dict(by_group), _scheduled(events, op_seconds, free, modelled), timed)


def _scheduled(events, op_seconds: list[float], free: list[bool], modelled: list) -> float:
    """The schedule's end; a free op (a view: no kernel) waits for nothing."""
    tasks = []
    backward = [i for i, ev in enumerate(events) if ev.phase in ("backward", "recompute")]
    grads = [(c, s) for c, s in modelled if c.phase == "backward"]
    after_optimizer = [(c, s) for c, s in modelled if c.phase != "backward"]
    first_optimizer = next((i for i, ev in enumerate(events) if ev.phase == "optimizer"), len(events))
    # a modelled bucket is issued when backward's compute reaches its share of the gradient bytes
    total = sum(c.bytes for c, _ in grads) or 1
    backward_s = sum(op_seconds[i] for i in backward)
    start_s = sum(op_seconds[i] for i, ev in enumerate(events[:backward[0]])) if backward else 0.0
    done, issue = 0, []
    for c, s in grads:
        done += c.bytes
        issue.append(start_s + backward_s * done / total)
    for i, ev in enumerate(events):
        if i == first_optimizer:
            tasks += [Task(s, "reduce_scatter", after=t, writes=(-1 - k,)) for k, ((c, s), t) in
                      enumerate(zip(grads, issue))]
        storages = tuple(t.storage for t in ev.inputs if t.storage >= 0)
        outputs = tuple(t.storage for t in ev.outputs if t.storage >= 0)
        if ev.op in _AG_STREAM:
            tasks.append(Task(op_seconds[i], "all_gather", writes=storages + outputs))
        elif ev.op in _RS_STREAM:
            tasks.append(Task(op_seconds[i], "reduce_scatter", writes=storages + outputs))
        else:
            waits = () if free[i] else storages
            if i == first_optimizer:
                waits += tuple(-1 - k for k in range(len(grads)))
            tasks.append(Task(op_seconds[i], reads=waits, writes=outputs, copy_out=ev.op == _COPY_OUT))
    if first_optimizer == len(events):
        tasks += [Task(s, "reduce_scatter", after=t) for (c, s), t in zip(grads, issue)]
    tasks += [Task(s) for _, s in after_optimizer]            # ZeRO-1/2: the updated parameters gathered
    return schedule(tasks)[0]


def model_flops(report, with_recompute: bool = False) -> int:
    """``dot`` FLOPs of the rank's forward and backward (and recompute when asked)."""
    phases = ("forward", "backward", "recompute") if with_recompute else ("forward", "backward")
    return sum(c.flops("dot") for p, c in report.by_phase.items() if p in phases)


def peak_flops(cluster: Cluster, dtype) -> tuple[float, str]:
    return cluster.device.peak(dtype_key(dtype))


__all__ = ["StepTime", "Task", "model_flops", "peak_flops", "schedule", "step_time"]

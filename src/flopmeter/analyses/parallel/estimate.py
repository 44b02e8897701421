"""Predicted step time of one rank: compute on the device's roofline, collectives on the cluster's
links (:mod:`.cluster`), and how the two overlap.

- compute: every costed op of the rank's step on :func:`flopmeter.bench.roofline.estimate_op`
  (max of FLOPs / peak for its dtype and bytes / memory bandwidth; datasheet peaks, no launch
  overhead), summed by phase;
- communication: each collective's time on the link its group spans, summed by group;
- ``no overlap`` (the prediction): compute + every collective, one after the other — an upper
  bound where nothing hides behind compute;
- ``overlapped`` (a lower bound): data-parallel collectives (FSDP2's all-gathers and
  reduce-scatters, DDP's all-reduces) run on their own stream beside compute, as FSDP2's prefetch
  and DDP's bucketing intend, while tensor-parallel collectives stay on the critical path:
  max(compute + TP collectives, DP collectives).

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


@dataclass
class StepTime:
    compute_by_phase: dict[str, float]
    comm_by_group: dict[str, float]
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
    def overlapped(self) -> float:
        tp = sum(v for g, v in self.comm_by_group.items() if g != "dp")
        return max(self.compute + tp, self.comm_by_group.get("dp", 0.0))

    def to_dict(self) -> dict:
        return {"compute_s": self.compute, "compute_by_phase_s": dict(self.compute_by_phase),
                "communication_s": self.comm, "communication_by_group_s": dict(self.comm_by_group),
                "step_no_overlap_s": self.no_overlap, "step_overlapped_s": self.overlapped}


def step_time(report, items, cluster: Cluster) -> StepTime:
    device = cluster.device
    by_phase: dict[str, float] = defaultdict(float)
    for row in report.ops:
        if row.status != "costed":
            continue
        e = estimate_op(row, device, overhead=False)
        by_phase[row.event.phase] += e.time_s
    by_group: dict[str, float] = defaultdict(float)
    timed = []
    for c in items:
        link, bandwidth, latency = cluster.link_of(c.ranks)
        seconds = collective_time(c.kind, c.bytes, c.size, bandwidth, latency)
        by_group[c.group] += seconds
        timed.append((c, seconds, link))
    return StepTime(dict(by_phase), dict(by_group), timed)


def model_flops(report, with_recompute: bool = False) -> int:
    """``dot`` FLOPs of the rank's forward and backward (and recompute when asked)."""
    phases = ("forward", "backward", "recompute") if with_recompute else ("forward", "backward")
    return sum(c.flops("dot") for p, c in report.by_phase.items() if p in phases)


def peak_flops(cluster: Cluster, dtype) -> tuple[float, str]:
    return cluster.device.peak(dtype_key(dtype))


__all__ = ["StepTime", "model_flops", "peak_flops", "step_time"]

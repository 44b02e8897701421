"""Memory of one rank over the traced step, by kind, and its peak.

Every storage of the trace lives from the event that created it (before the step: from the
start) to the last event before the program dropped it (eager semantics, as in
:mod:`flopmeter.trace.model`), at the size it had when first seen and then at each size FSDP2
resized it to (the resize log of :mod:`.record`). Each storage has one kind, the first that
applies:

- ``parameters``: the rank's parameter shards (FSDP2's padded shards: the storage, padding
  included), present before the step;
- ``unsharded parameters``: FSDP2's all-gathered parameters, while allocated;
- ``gradients``: the storages the parameters' ``.grad`` hold after backward (FSDP2: its
  reduce-scatter outputs);
- ``optimizer state``: the tensors of the optimizer's state;
- ``buffers`` and ``inputs``;
- ``communication buffers``: the flat buffers of FSDP2's all-gathers and reduce-scatters (tensors
  of ``c10d`` and ``fsdp`` ops);
- ``activations``: anything else made in the forward (or a recompute): saved tensors, outputs,
  temporaries;
- ``backward temporaries``: anything else made in backward or the optimizer step (activation
  gradients, unsharded gradients before their reduce-scatter).

The peak is the largest total over the events; its breakdown is each kind's live bytes there.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("parameters", "unsharded parameters", "gradients", "optimizer state", "activations",
         "backward temporaries", "communication buffers", "buffers", "inputs")
_ASSIGNED = ("parameters", "unsharded parameters", "gradients", "optimizer state", "buffers", "inputs",
             "communication buffers")
COMM_OPS = ("c10d.", "fsdp.")


@dataclass
class MemoryTimeline:
    """Live bytes by kind after each event (``series[kind][i]``), and where the total peaks."""

    series: dict[str, list[int]]
    phases: list[str]

    @property
    def total(self) -> list[int]:
        return [sum(values) for values in zip(*self.series.values())] if self.series else []

    def peak_index(self, scale: dict[str, float] | None = None, extra: dict[str, int] | None = None) -> int:
        totals = self.scaled_total(scale, extra)
        return max(range(len(totals)), key=totals.__getitem__) if totals else 0

    def scaled_total(self, scale: dict[str, float] | None = None, extra: dict[str, int] | None = None) -> list[int]:
        scale, extra = scale or {}, extra or {}
        n = len(self.phases)
        out = [0] * n
        for kind, values in self.series.items():
            f = scale.get(kind, 1.0)
            for i in range(n):
                out[i] += int(values[i] * f)
        add = sum(extra.values())
        return [v + add for v in out]

    def at(self, index: int, scale: dict[str, float] | None = None, extra: dict[str, int] | None = None) -> dict:
        scale, extra = scale or {}, extra or {}
        out = {k: int(self.series[k][index] * scale.get(k, 1.0)) for k in self.series}
        for k, v in extra.items():
            out[k] = out.get(k, 0) + v
        return out


def storage_kinds(trace, assigned: dict[str, set[int]]) -> dict[int, str]:
    """Storage id → kind (see the module docstring)."""
    kind: dict[int, str] = {}
    for name in _ASSIGNED:
        for sid in assigned.get(name, ()):
            if sid >= 0:
                kind.setdefault(sid, name)
    for ev in trace.events:
        if ev.op.startswith(COMM_OPS):
            for t in ev.inputs + ev.outputs:
                if t.storage >= 0:
                    kind.setdefault(t.storage, "communication buffers")
    events = trace.events
    for sid, info in trace.storages.items():
        if sid not in kind:
            phase = events[info.created].phase if 0 <= info.created < len(events) else "forward"
            kind[sid] = "activations" if phase in ("forward", "recompute") else "backward temporaries"
    return kind


def timeline(trace, assigned: dict[str, set[int]], resizes: list[tuple[int, int, int]]) -> MemoryTimeline:
    """The live bytes of each kind after every event of ``trace``."""
    n = len(trace.events)
    kinds = storage_kinds(trace, assigned)
    deltas = {k: [0] * (n + 1) for k in KINDS}
    size: dict[int, int] = {}
    by_storage: dict[int, list[tuple[int, int]]] = {}
    for index, sid, nbytes in resizes:
        by_storage.setdefault(sid, []).append((min(index, n), nbytes))
    for sid, info in trace.storages.items():
        d = deltas[kinds[sid]]
        start = max(info.created, 0)
        end = n if info.freed is None else min(info.freed + 1, n)
        current = info.nbytes
        d[start] += current
        for index, nbytes in sorted(by_storage.get(sid, ())):
            if start <= index < end:
                d[index] += nbytes - current
                current = nbytes
        d[end] -= current
        size[sid] = current
    series = {}
    for k, d in deltas.items():
        running, values = 0, []
        for i in range(n):
            running += d[i]
            values.append(running)
        series[k] = values
    return MemoryTimeline(series, [ev.phase for ev in trace.events])


__all__ = ["KINDS", "MemoryTimeline", "storage_kinds", "timeline"]

"""Training facts of a report: cost by phase and the memory of the step.

The step's peak comes from the trace's storage lifetimes (``StorageInfo.created`` /
``freed``): the bytes of the storages alive at each event, maximised. Parameters, buffers
and inputs are alive from the start; gradients and optimizer state from their creation to the
end. (The memory timeline, :mod:`flopmeter.memory.timeline`, gives the same sweep with more
detail; this is the one number the training view needs.)
"""

from __future__ import annotations

from ..trace.model import Trace

PHASES = ("forward", "recompute", "backward", "optimizer")


def step_peak(trace: Trace) -> tuple[int, int]:
    """(peak bytes of live storages, the index of the event at which it is reached; -1 before
    the first event): the memory timeline's peak (:func:`flopmeter.memory.timeline.timeline`),
    one computation for inference and training alike."""
    from ..memory.timeline import timeline

    peak = timeline(trace).peak
    return peak.bytes, peak.event


def training_memory(trace: Trace) -> dict | None:
    """Saved-for-backward bytes (total and per module), gradients, optimizer state and the
    step's peak, for a training trace; None for an inference trace."""
    info = trace.extra.get("training")
    if info is None:
        return None
    peak, at = step_peak(trace)
    phase = trace.events[at].phase if 0 <= at < len(trace.events) else "forward"
    facts = {k: v for k, v in info.items() if not k.endswith("_storages")}     # storage ids stay in the trace
    return {**facts, "peak_bytes": peak, "peak_event": at, "peak_phase": phase}

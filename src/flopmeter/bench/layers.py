"""Measured time per module and per op type, from ``torch.profiler``, joined with counted cost.

Each module call runs inside a ``record_function`` range named ``flopmeter.module::PATH``,
pushed and popped by PyTorch's *global* module forward hooks (torch's registry, not the
user's modules), installed for the profiled run only and removed in ``finally``. Paths are
the ones ``flopmeter.count`` reports (``named_modules()``, a shared module under its first
name, ``""`` for the root).

A module's ``total`` time is the sum of its ranges over the profiled iterations divided by
the number of iterations (so a module called twice per forward shows both calls); ``own``
is total minus the totals of the modules called inside it. Own times add up to the root's
total exactly; the root's total is the profiled forward, which includes the profiler's
overhead (a few microseconds per op and per range), reported as ``overhead`` against the
unprofiled p50. On CUDA a range's time is the device time of the kernels launched in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules import module as module_mod

PREFIX = "flopmeter.module::"


@dataclass
class LayerTime:
    path: str
    type: str
    calls: int                  # calls per forward
    total: float                # seconds per forward, children included
    own: float                  # seconds per forward outside child modules
    flops: int | None = None    # counted FLOPs (children included) of one forward
    bytes: int | None = None    # counted bytes read + written (children included)
    children: list[str] = field(default_factory=list)

    @property
    def achieved_flops(self) -> float | None:
        return self.flops / self.total if self.flops is not None and self.total > 0 else None

    @property
    def achieved_bytes(self) -> float | None:
        return self.bytes / self.total if self.bytes is not None and self.total > 0 else None

    def to_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "calls": self.calls, "total": self.total, "own": self.own,
                "flops": self.flops, "bytes": self.bytes, "achieved_flops": self.achieved_flops,
                "achieved_bytes": self.achieved_bytes}


@dataclass
class LayerProfile:
    modules: dict[str, LayerTime]      # path → LayerTime, in call order
    ops: dict[str, float]              # op name → self time per forward (seconds), largest first
    iterations: int
    profiled: float                    # the root's profiled time per forward (seconds)
    whole: float | None = None         # the unprofiled p50, set by measure()
    convention: str | None = None

    @property
    def leaves(self) -> list[LayerTime]:
        return [m for m in self.modules.values() if not m.children]

    @property
    def leaf_sum(self) -> float:
        """Time inside leaf modules (convolutions, norms, activations, …) per forward."""
        return sum(m.total for m in self.leaves)

    @property
    def outside_leaves(self) -> float:
        """Time in container forwards outside any leaf (residual adds, reshapes, functional calls)."""
        return self.profiled - self.leaf_sum

    @property
    def overhead(self) -> float | None:
        """Profiled forward ÷ unprofiled p50 − 1."""
        return None if not self.whole else self.profiled / self.whole - 1

    def to_dict(self) -> dict:
        return {"iterations": self.iterations, "profiled": self.profiled, "whole": self.whole,
                "overhead": self.overhead, "leaf_sum": self.leaf_sum, "outside_leaves": self.outside_leaves,
                "convention": self.convention, "modules": [m.to_dict() for m in self.modules.values()],
                "ops": self.ops}


class _Ranges:
    """Global pre/post forward hooks that open and close one profiler range per module call."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.open: list[tuple[int, object]] = []

    def _pre(self, module, args):
        name = self.names.get(id(module))
        if name is not None:
            rf = torch.autograd.profiler.record_function(PREFIX + name)
            rf.__enter__()
            self.open.append((id(module), rf))

    def _post(self, module, args, output):
        if self.open and self.open[-1][0] == id(module):
            self.open.pop()[1].__exit__(None, None, None)

    def install(self):
        pre = module_mod.register_module_forward_pre_hook(self._pre)
        try:
            post = module_mod.register_module_forward_hook(self._post, always_call=True)
        except BaseException:
            pre.remove()
            raise
        return pre, post


def _elapsed(evt, cuda: bool) -> float:
    """Seconds of one profiler event: wall time on CPU, device time of its kernels on CUDA."""
    return (evt.device_time_total if cuda else evt.time_range.elapsed_us()) / 1e6


def profile_layers(model: nn.Module, args: tuple, kwargs: dict, report=None, *, device: torch.device | None = None,
                   iterations: int = 3, threads: int | None = None) -> LayerProfile:
    """Profile ``iterations`` forwards (after one warm-up) and return time per module and per op type.

    ``report`` (a ``flopmeter.Report`` of the same call) adds each module's FLOPs and bytes.
    The model must already be in the mode to time (``measure`` puts it in eval mode).
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device is not None and device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    types = {name: type(m).__name__ for name, m in model.named_modules()}
    prior = torch.get_num_threads()
    ranges = _Ranges(model)
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            model(*args, **kwargs)
            pre, post = ranges.install()
            try:
                with profile(activities=activities) as prof:
                    for _ in range(iterations):
                        model(*args, **kwargs)
                    if cuda:
                        torch.cuda.synchronize()
            finally:
                pre.remove()
                post.remove()
                for _, rf in reversed(ranges.open):      # a forward that raised leaves ranges open
                    rf.__exit__(None, None, None)
    finally:
        torch.set_num_threads(prior)
    return _collect(prof.events(), types, iterations, cuda, report)


def _module_parent(evt) -> str | None:
    p = evt.cpu_parent
    while p is not None and not p.name.startswith(PREFIX):
        p = p.cpu_parent
    return None if p is None else p.name[len(PREFIX):]


def _collect(events, types: dict, iterations: int, cuda: bool, report) -> LayerProfile:
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    children: dict[str, list[str]] = defaultdict(list)
    child_time: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    root_times = []
    for evt in events:
        if evt.name.startswith(PREFIX):
            path = evt.name[len(PREFIX):]
            t = _elapsed(evt, cuda)
            total[path] += t
            calls[path] += 1
            parent = _module_parent(evt)
            if parent is None:
                root_times.append(t)
            else:
                child_time[parent] += t
                if path not in children[parent]:
                    children[parent].append(path)
        elif not getattr(evt, "is_user_annotation", False):
            ops[evt.name] += (evt.self_device_time_total if cuda else evt.self_cpu_time_total) / 1e6
    n = iterations
    nodes = {node.path: node for node in report.modules()} if report is not None else {}
    modules = {}
    for path in total:
        node = nodes.get(path)
        cost = node.total if node is not None else None
        modules[path] = LayerTime(
            path=path, type=types.get(path, "?"), calls=calls[path] // n, total=total[path] / n,
            own=(total[path] - child_time[path]) / n, children=children[path],
            flops=cost.flops(report.convention) if cost is not None else None,
            bytes=cost.bytes_read + cost.bytes_written if cost is not None else None)
    ops_sorted = dict(sorted(((k, v / n) for k, v in ops.items() if v > 0), key=lambda kv: -kv[1]))
    return LayerProfile(modules=modules, ops=ops_sorted, iterations=n, profiled=sum(root_times) / n,
                        convention=report.convention if report is not None else None)


__all__ = ["LayerProfile", "LayerTime", "PREFIX", "profile_layers"]

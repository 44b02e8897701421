"""Where a fake-mode count's time goes: a cProfile of ``flopmeter.count`` split by who spends it.

Each function's own time (and that of the C functions it calls) is put in one group by the
file it lives in: PyTorch's fake tensors (FakeTensor, its dispatch cache, meta kernels and
decompositions), PyTorch's dispatch wrappers around a Python mode, the model's own Python and
``nn.Module`` calls, flopmeter's recording (refs, events, module stack, the dispatch memo,
shadow and parameter tables) and flopmeter's report (formulas, costing, the module tree).
Shares are of the profiled time (cProfile slows Python calls more than C, so they lean toward
Python-heavy parts); per op, the time inside the recording mode's dispatch is listed for the
ops that take the most, with how many ran. First, unprofiled (best of ``--runs``, each timed
right after an untimed call of the same): the count, the model's forward on the meta device,
and that forward under a pass-through dispatch mode — what PyTorch charges any op-level
recorder (its own FlopCounterMode and FakeTensorMode too) before it records anything. Then
the count split into four parts that add up to it: the meta forward, PyTorch's mode dispatch
(pass-through minus meta), flopmeter inside the forward (the count's forward minus the
pass-through one: negative where the dispatch memo skips meta kernels the plain forward runs)
and flopmeter's work once per count outside the forward (the shadow copy of the module tree,
the parameter and module tables, replay's install, the module stack's install, the global
state kept and put back, and the report, each wall-clocked).

    python benchmarks/count_profile.py swin_t efficientnet_b0 --runs 3
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import pstats
import time
import warnings

import torch

import flopmeter
from flopmeter.trace import recorder

GROUPS = (
    ("PyTorch fake tensors", ("torch/_subclasses/", "torch/_prims_common", "torch/_meta_registrations", "torch/_decomp",
                              "torch/_refs", "torch/_prims/", "torch/utils/_pytree", "torch/_library", "torch/_ops",
                              "torch/fx/", "torch/_higher_order_ops", "torch/_guards", "torch/_logging")),
    ("PyTorch mode dispatch", ("torch/_dynamo/", "torch/_compile", "torch/utils/_python_dispatch", "torch/utils/_stats")),
    ("model Python, nn.Module", ("torch/nn/", "torchvision/", "transformers/", "timm/", "torch/functional",
                                 "torch/_tensor", "torch/overrides")),
    ("flopmeter recording", ("flopmeter/trace/",)),
    ("flopmeter report", ("flopmeter/report/", "flopmeter/formulas/", "flopmeter/cost", "flopmeter/memory/",
                          "flopmeter/api")),
)


def group_of(filename: str) -> str:
    for name, parts in GROUPS:
        if any(p in filename for p in parts):
            return name
    return "other"


def split(stats: pstats.Stats) -> collections.Counter:
    """Own time per group; a C function's time goes to its callers' groups, in proportion."""
    out: collections.Counter = collections.Counter()
    for (filename, _, _), (_, _, own, _, callers) in stats.stats.items():
        if filename != "~":
            out[group_of(filename)] += own
            continue
        total = sum(c[2] for c in callers.values()) or 1.0
        for (caller_file, _, _), c in callers.items():
            out[group_of(caller_file)] += own * c[2] / total
    return out


def per_op(model, inputs, runs: int) -> tuple[collections.Counter, collections.Counter]:
    """Seconds inside the recording mode's dispatch, and calls, per op (outermost ops only)."""
    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    original = recorder.RecordingFakeMode.__torch_dispatch__

    def timed(self, func, types, args=(), kwargs=None):
        if self._depth or self.recording is None:
            return original(self, func, types, args, kwargs)
        start = time.perf_counter()
        try:
            return original(self, func, types, args, kwargs)
        finally:
            spent[str(func)] += time.perf_counter() - start
            calls[str(func)] += 1

    recorder.RecordingFakeMode.__torch_dispatch__ = timed
    try:
        for _ in range(runs):
            flopmeter.count(model, *inputs)
    finally:
        recorder.RecordingFakeMode.__torch_dispatch__ = original
    return spent, calls


# flopmeter's work done once per count, outside the model's forward: (module, function) wrapped
# with a wall clock while the decomposition is timed
PER_COUNT = (("flopmeter.trace.run", "fake_substitutes"), ("flopmeter.trace.run", "_param_table"),
             ("flopmeter.trace.run", "shadow"), ("flopmeter.trace.replay", "Replayer.install"),
             ("flopmeter.trace.run", "_resolve_params"), ("flopmeter.trace.run", "_module_table"),
             ("flopmeter.api", "build_report"))
# … and context managers: the time to enter and to leave them (the body, the forward, apart)
PER_COUNT_CONTEXTS = (("flopmeter.trace.run", "globals_kept"), ("flopmeter.trace.modules", "ModuleStack.installed"))


def _located(module_name: str, qualname: str):
    """(owner, attribute name) of ``module_name``'s ``qualname`` ("Class.method" or "function")."""
    import importlib
    owner = importlib.import_module(module_name)
    *outer, name = qualname.split(".")
    for part in outer:
        owner = getattr(owner, part)
    return owner, name


def _clock_call(f, name: str, spent: collections.Counter):
    def wrapped(*a, **k):
        start = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapped


def _clock_context(f, name: str, spent: collections.Counter):
    @contextlib.contextmanager
    def entered(*a, **k):
        start = time.perf_counter()
        manager = f(*a, **k)
        value = manager.__enter__()
        spent[name] += time.perf_counter() - start
        try:
            yield value
        except BaseException as exc:
            start = time.perf_counter()
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            start = time.perf_counter()
            manager.__exit__(None, None, None)
        finally:
            spent[name] += time.perf_counter() - start
    return entered


@contextlib.contextmanager
def clocked(spent: collections.Counter):
    """Every PER_COUNT function (PER_COUNT_CONTEXTS context manager: its entering and leaving)
    adds its wall time to ``spent`` (by name) while inside."""
    undo = []
    for table, clock in ((PER_COUNT, _clock_call), (PER_COUNT_CONTEXTS, _clock_context)):
        for module_name, qualname in table:
            owner, name = _located(module_name, qualname)
            original = getattr(owner, name)
            setattr(owner, name, clock(original, name, spent))
            undo.append((owner, name, original))
    try:
        yield spent
    finally:
        for owner, name, original in undo:
            setattr(owner, name, original)


def floors(model, inputs, runs: int) -> list[str]:
    """The unprofiled lines: count, meta forward, meta forward under a pass-through mode, and the
    count split into the meta forward, PyTorch's mode dispatch, flopmeter inside the forward and
    flopmeter's work once per count (best of ``runs`` each; the split's parts are differences of
    those bests, so they add up to the count exactly and may be negative where flopmeter's forward
    is faster than the pass-through one)."""
    from speed import meta_copy, mode_forward, warm_timed
    from counters import plain_forward
    meta_model, meta_inputs = meta_copy(model, inputs)
    best = {"count": [], "meta": [], "mode": [], "fixed": []}
    per_phase: collections.Counter = collections.Counter()
    for _ in range(max(runs, 5)):
        best["count"].append(warm_timed(lambda m, x: flopmeter.count(m, *x), model, inputs))
        best["meta"].append(warm_timed(plain_forward, meta_model, meta_inputs))
        best["mode"].append(warm_timed(mode_forward, meta_model, meta_inputs))
        with clocked(collections.Counter()) as spent:
            flopmeter.count(model, *inputs)
        best["fixed"].append(sum(spent.values()) * 1e3)
        if best["fixed"][-1] == min(best["fixed"]):
            per_phase = spent
    count, meta, mode, fixed = (min(best[k]) for k in ("count", "meta", "mode", "fixed"))
    forward = count - fixed
    phases = ", ".join(f"{name} {seconds * 1e3:.2f}" for name, seconds in per_phase.most_common())
    return [f"  unprofiled: count {count:.2f} ms = {count / meta:.2f}x the meta forward ({meta:.2f} ms); "
            f"the meta forward under a pass-through dispatch mode {mode:.2f} ms = {mode / meta:.2f}x",
            f"  the count, split (ms): meta forward {meta:.2f} + PyTorch's mode dispatch {mode - meta:.2f} "
            f"+ flopmeter in the forward {forward - mode:.2f} + flopmeter once per count {fixed:.2f}",
            f"    once per count: {phases}",
            f"    the count's forward alone is {forward / meta:.2f}x the meta forward; PyTorch's mode dispatch "
            f"alone makes any op-level recorder {mode / meta:.2f}x"]


def main() -> None:
    from speed import build, check_names
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=8, help="ops listed per model (default 8)")
    args = parser.parse_args()
    check_names(parser, args.models)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    for name in args.models:
        model, inputs = build(name, 1)
        flopmeter.count(model, *inputs)                    # warm: fakes and caches made
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.runs):
            report = flopmeter.count(model, *inputs)
        profile.disable()
        groups = split(pstats.Stats(profile))
        total = sum(groups.values())
        print(f"\n{name}: {len(report.trace.events)} events; profiled count {total / args.runs * 1e3:.1f} ms")
        print("\n".join(floors(model, inputs, args.runs)))
        for group, seconds in groups.most_common():
            print(f"  {seconds / total * 100:5.1f} %  {group}")
        spent, calls = per_op(model, inputs, args.runs)
        inside = sum(spent.values())
        print(f"  in the recording mode's dispatch, unprofiled: {inside / args.runs * 1e3:.1f} ms per count")
        for op, seconds in spent.most_common(args.ops):
            print(f"    {op:42s} {calls[op] // args.runs:5d} calls  {seconds / args.runs * 1e3:6.2f} ms  "
                  f"{seconds / calls[op] * 1e6:6.1f} µs each")


if __name__ == "__main__":
    main()

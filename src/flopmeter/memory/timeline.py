"""Live bytes at every op of a forward, from the trace's storage lifetimes (eager semantics).

A storage is alive at op ``i`` when it was created at or before ``i`` and the program had not
yet dropped its last reference (``created ≤ i ≤ freed``, or alive to the end): the bytes an
eager PyTorch program holds at the end of that op, with its outputs allocated and its inputs
not yet released. Lifetimes are those of the Python program, not of an ideal compiler that
would free each tensor after its last use: a tensor held in a local variable (a ResNet's
skip connection, a cache) stays alive until that variable goes.

Each storage has a role: ``param``/``buffer`` (the model's tensors), ``input`` (the example
inputs), ``master`` (a training step's float32 master weights, which exist before the step),
``grad`` and ``state`` (a training step's gradients and optimizer state, made in the step),
``const`` (a tensor that existed before the run without being any of these, first seen as an
op's input — a plain tensor attribute of a module) and ``act`` (created by the run).
Storage sizes are counted once however many views share them. With ``rounding`` (512 on CUDA:
the caching allocator hands out multiples of 512 bytes) every storage is rounded up first.
Kernel workspaces that a kernel allocates and frees inside one op (oneDNN reorders, cuBLAS
workspaces) are not tensors the program sees and are not in the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("param", "buffer", "input", "master", "grad", "state", "const", "act")
CUDA_BLOCK = 512


def rounded(nbytes: int, rounding: int | None) -> int:
    if not rounding:
        return nbytes
    return -(-nbytes // rounding) * rounding


@dataclass(frozen=True)
class Peak:
    """The largest live total, where it happens and what it is made of."""

    bytes: int
    event: int                    # op index (-1: before the first op)
    op: str
    module: str
    by_role: dict                 # role → bytes alive at that op

    @property
    def activations(self) -> int:
        return self.by_role.get("act", 0)

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "event": self.event, "op": self.op, "module": self.module,
                "by_role": dict(self.by_role)}


@dataclass
class ModuleMemory:
    """A module's calls: the largest live total while one runs (and the activations in it), and
    the most bytes one call created and left alive when it returned (its outputs and anything it
    kept)."""

    path: str
    calls: int = 0
    peak: int = 0
    peak_activations: int = 0
    leaves: int = 0

    def to_dict(self) -> dict:
        return {"path": self.path, "calls": self.calls, "peak": self.peak,
                "peak_activations": self.peak_activations, "leaves": self.leaves}


@dataclass
class Timeline:
    live: list[int]                         # total live bytes after each op
    activations: list[int]                  # the ``act`` part of it
    fixed: dict                             # role → bytes alive before the first op
    peak: Peak
    modules: dict[str, ModuleMemory] = field(default_factory=dict)
    rounding: int | None = None

    def to_dict(self, *, series: bool = True) -> dict:
        d = {"semantics": "eager: a tensor is alive until the program drops its last reference",
             "rounding": self.rounding, "before_run": dict(self.fixed), "peak": self.peak.to_dict(),
             "modules": [m.to_dict() for m in self.modules.values()]}
        if series:
            d["live"] = list(self.live)
            d["activations"] = list(self.activations)
        return d


def storage_roles(trace) -> dict[int, str]:
    """Storage id → role (see the module docstring)."""
    roles: dict[int, str] = {}
    for p in trace.params:
        if p.storage >= 0:
            roles[p.storage] = "param" if p.kind == "param" else "buffer"
    for t in trace.inputs:
        if t.storage >= 0:
            roles.setdefault(t.storage, "input")
    training = trace.extra.get("training") or {}
    for role in ("master", "grad", "state"):
        for sid in training.get(f"{role}_storages", ()):
            roles.setdefault(sid, role)
    n = len(trace.events)
    for sid, st in trace.storages.items():
        if sid in roles:
            continue
        if st.created < 0:
            roles[sid] = "const"
        elif st.created < n and not any(t.storage == sid for t in trace.events[st.created].outputs):
            roles[sid] = "const"          # first seen going into an op, not coming out: made before the run
        else:
            roles[sid] = "act"
    return roles


def _span(st, role: str, n: int) -> tuple[int, int]:
    """(first, last) op index a storage is alive at; first −1: before the run; last n: to the end."""
    first = -1 if st.created < 0 or role == "const" else st.created
    if st.freed is None:
        return first, n
    return first, max(st.freed, first)


def timeline(trace, *, rounding: int | None = None) -> Timeline:
    """The live-bytes timeline of a recorded forward (``rounding``: round each storage up to
    a multiple of this many bytes, e.g. :data:`CUDA_BLOCK`)."""
    events = trace.events
    n = len(events)
    roles = storage_roles(trace)
    fixed = {r: 0 for r in ROLES}
    delta_total = [0] * (n + 1)
    delta_act = [0] * (n + 1)
    spans, extra = {}, {}
    for sid, st in trace.storages.items():
        role = roles[sid]
        first, last = spans[sid] = _span(st, role, n)
        size = rounded(st.nbytes, rounding)
        if first < 0:
            fixed[role] += size
        if first >= n or last < 0:
            continue                       # only in the returned value, after the last op; or gone before it
        start, stop = max(first, 0), min(last + 1, n)
        delta_total[start] += size
        delta_total[stop] -= size
        if role == "act":
            delta_act[start] += size
            delta_act[stop] -= size
    for p in trace.params:       # weights without a storage in the run (a quantized module's packed ones)
        if p.storage < 0 or p.storage not in trace.storages:
            role = "param" if p.kind == "param" else "buffer"
            size = rounded(p.nbytes, rounding)
            fixed[role] += size
            delta_total[0] += size
            spans[("param", p.name)] = (-1, n)
            extra[("param", p.name)] = (role, size)
    live, acts = [], []
    total = act = 0
    for i in range(n):
        total += delta_total[i]
        act += delta_act[i]
        live.append(total)
        acts.append(act)
    fixed = {r: v for r, v in fixed.items() if v}
    if n:
        i = max(range(n), key=live.__getitem__)
        ev = events[i]
        by_role = {r: 0 for r in ROLES}
        for sid, (first, last) in spans.items():
            if first <= i <= last:
                if sid in extra:
                    by_role[extra[sid][0]] += extra[sid][1]
                else:
                    by_role[roles[sid]] += rounded(trace.storages[sid].nbytes, rounding)
        peak = Peak(live[i], i, f"{ev.op}.{ev.overload}", ev.module, {r: v for r, v in by_role.items() if v})
    else:
        peak = Peak(sum(fixed.values()), -1, "", "", dict(fixed))
    return Timeline(live, acts, fixed, peak, _modules(trace, roles, live, acts, rounding), rounding)


def _modules(trace, roles, live, acts, rounding) -> dict[str, ModuleMemory]:
    calls: dict[tuple, list] = {}                        # (path, call) → [first, last, peak, peak act]
    for i, ev in enumerate(trace.events):
        for key in ev.stack:
            c = calls.get(key)
            if c is None:
                calls[key] = [i, i, live[i], acts[i]]
            else:
                c[1] = i
                if live[i] > c[2]:
                    c[2] = live[i]
                if acts[i] > c[3]:
                    c[3] = acts[i]
    leaves: dict[tuple, int] = {}
    n = len(trace.events)
    for sid, st in trace.storages.items():
        if roles[sid] != "act" or st.created < 0 or st.created >= n:
            continue
        for key in trace.events[st.created].stack:
            last = calls[key][1]
            if st.freed is None or st.freed > last:
                leaves[key] = leaves.get(key, 0) + rounded(st.nbytes, rounding)
    out: dict[str, ModuleMemory] = {}
    for (path, _), (first, last, peak, peak_act) in calls.items():
        m = out.get(path)
        if m is None:
            m = out[path] = ModuleMemory(path)
        m.calls += 1
        m.peak = max(m.peak, peak)
        m.peak_activations = max(m.peak_activations, peak_act)
    for (path, _), size in leaves.items():
        out[path].leaves = max(out[path].leaves, size)
    return out


def sparkline(values: list[int], width: int = 60) -> str:
    """A text sparkline of ``values`` squeezed to ``width`` columns (the max of each bucket)."""
    if not values:
        return ""
    blocks = "▁▂▃▄▅▆▇█"
    n = len(values)
    width = min(width, n)
    buckets = [max(values[i * n // width: max((i + 1) * n // width, i * n // width + 1)]) for i in range(width)]
    lo, hi = min(buckets), max(buckets)
    span = hi - lo or 1
    return "".join(blocks[min(len(blocks) - 1, (v - lo) * len(blocks) // span)] for v in buckets)


__all__ = ["CUDA_BLOCK", "ModuleMemory", "Peak", "ROLES", "Timeline", "rounded", "sparkline", "storage_roles",
           "timeline"]

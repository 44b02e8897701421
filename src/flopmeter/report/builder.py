"""Build a Report from a Trace alone: cost each event, attribute, sum the tree.

No model is needed: the module tree, the parameter table and the inputs are in the trace,
so a trace loaded from a file (or made by the ONNX front end) builds the same report.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..cost import ZERO, Cost, get_convention
from ..errors import UnsupportedOpsError
from ..formulas import REGISTRY, UNSUPPORTED, Registry
from ..formulas.attention import with_causal
from ..trace.events import tensors_in
from ..trace.model import Trace
from ..trace.run import gc_paused
from .model import ModuleNode, OpRow, Report, TensorStats
from .training import training_memory


def tensor_stats(params, kind: str) -> TensorStats:
    count = trainable = tensors = 0
    by_dtype: dict[str, int] = defaultdict(int)
    for p in params:
        if p.kind != kind:
            continue
        n = p.numel
        count += n
        tensors += 1
        trainable += n if p.requires_grad else 0
        by_dtype[str(p.dtype).removeprefix("torch.")] += p.nbytes
    return TensorStats(count, trainable, count - trainable, tensors, dict(by_dtype))


@gc_paused          # it makes an object or two per event: the cyclic collector would sweep the heap over and over
def build_report(trace: Trace, *, registry: Registry | None = None, convention: str = "dot",
                 strict: bool = False, causal: str = "full") -> Report:
    """The Report of ``trace``, costed with (a copy of) ``registry`` under ``causal``."""
    base = registry or REGISTRY
    # only flopmeter's own formulas: a user's formula on the global registry may read more than
    # an op's arguments (Registry.builtin_only), so it is called for every event
    builtin = (registry is None or registry is REGISTRY) and REGISTRY.builtin_only()
    registry = with_causal(base.copy(), causal)
    conv = get_convention(convention)

    rows: list[OpRow] = []
    groups: dict[tuple[str, str], list[Cost]] = {}       # (module, phase) → its ops' costs, summed once below
    unsupported: Counter = Counter()
    unsupported_phase: dict[str, Counter] = defaultdict(Counter)
    classify = registry.classify
    events = trace.events
    # a replayed module call (trace/replay.py) costs what the call it copies cost: the built-in
    # formulas read an op's arguments, never tensor ids or module paths
    spans = {start: (length, src) for start, length, src in trace.replayed if length} if builtin else {}
    version = (base.version, causal)
    sums: dict[tuple[int, int], tuple] = {}
    i, n = 0, len(events)
    while i < n:
        span = spans.get(i)
        if span is not None:
            length, src = span
            for k in range(length):
                row = rows[src + k]
                rows.append(OpRow(events[i + k], row.status, row.cost))
            per_module, missing = sums.get(span) or sums.setdefault(span, _span_sums(rows, src, length))
            for offset, phase, cost in per_module:
                groups.setdefault((events[i + offset].module, phase), []).append(cost)
            for (phase, op), count in missing:
                unsupported[op] += count
                unsupported_phase[phase][op] += count
            i += length
            continue
        ev = events[i]
        i += 1
        entry = ev.memo if builtin else None
        if entry is None:
            status, cost = classify(ev)
        else:                                            # costed once per memo key (trace/memo.py)
            known = entry.costs.get(version)
            if known is None:
                known = entry.costs[version] = classify(ev)
            status, cost = known
        rows.append(OpRow(ev, status, cost))
        if status == UNSUPPORTED:
            unsupported[ev.op] += 1
            unsupported_phase[ev.phase][ev.op] += 1
        elif not cost.is_zero:
            group = groups.get((ev.module, ev.phase))
            if group is None:
                groups[(ev.module, ev.phase)] = [cost]
            else:
                group.append(cost)
    own: dict[str, Cost] = {}
    own_phase: dict[str, dict[str, Cost]] = defaultdict(dict)
    for (module, phase), costs in groups.items():
        cost = _sum(costs)
        own_phase[module][phase] = cost
        own[module] = own[module] + cost if module in own else cost
    if strict and unsupported:
        raise UnsupportedOpsError(dict(unsupported))

    params_own: dict[str, int] = defaultdict(int)
    for p in trace.params:                               # unique tensors, canonical names
        if p.kind == "param":
            params_own[p.module] += p.numel

    nodes: dict[str, ModuleNode] = {}
    for m in trace.modules:
        nodes[m.path] = ModuleNode(m.path, m.type, m.calls, own.get(m.path, ZERO), ZERO, params_own.get(m.path, 0),
                                   0, tensors_in(m.outputs[0]) if m.outputs else [])
        nodes[m.path].by_phase = dict(own_phase.get(m.path, {}))
        if m.path:
            nodes[m.path.rpartition(".")[0]].children.append(nodes[m.path])
    root = nodes[""]
    _sum_tree(root)

    return Report(
        model=trace.model, convention=conv.name, mode=trace.mode, device=trace.device,
        inference=trace.inference, torch_version=trace.torch_version, inputs=list(trace.inputs), root=root,
        ops=rows, unsupported=dict(unsupported), params=tensor_stats(trace.params, "param"),
        buffers=tensor_stats(trace.params, "buffer"), causal=causal, trace=trace, strict=strict,
        registry=base, unsupported_by_phase={k: dict(v) for k, v in unsupported_phase.items()},
        training=training_memory(trace),
    )


def _sum(costs: list[Cost]) -> Cost:
    """The sum of ``costs``, made as one Cost."""
    if len(costs) == 1:
        return costs[0]
    macs = dots = elementwise = transcendental = bytes_read = bytes_written = 0
    for c in costs:                       # one pass (six sums over generators cost three times as much)
        macs += c.macs
        dots += c.dots
        elementwise += c.elementwise
        transcendental += c.transcendental
        bytes_read += c.bytes_read
        bytes_written += c.bytes_written
    return Cost(macs, dots, elementwise, transcendental, bytes_read, bytes_written)


def _span_sums(rows: list[OpRow], src: int, length: int) -> tuple[list, list]:
    """The costs of rows[src:src + length] summed per (module, phase) — each with the offset of
    its first op, where the replayed copy's module path is read — and its unsupported ops counted."""
    first: dict[tuple[str, str], int] = {}
    costs: dict[tuple[str, str], list[Cost]] = {}
    missing: Counter = Counter()
    for k in range(length):
        row = rows[src + k]
        ev = row.event
        if row.status == UNSUPPORTED:
            missing[(ev.phase, ev.op)] += 1
        elif not row.cost.is_zero:
            key = (ev.module, ev.phase)
            if key in costs:
                costs[key].append(row.cost)
            else:
                first[key], costs[key] = k, [row.cost]
    return [(first[key], key[1], _sum(c)) for key, c in costs.items()], list(missing.items())


def _sum_tree(node: ModuleNode) -> None:
    """Each node's total, parameter total and per-phase costs: its own plus its children's, each
    made as one Cost (a Cost per child added costs a third of a small model's report)."""
    children = node.children
    if not children:
        node.total, node.params_total = node.own, node.params_own
        return
    totals = [node.own] if node.by_phase else []           # no phase: no op of its own (own is ZERO)
    params = node.params_own
    phases: dict[str, list[Cost]] = {phase: [cost] for phase, cost in node.by_phase.items()}
    for child in children:
        _sum_tree(child)
        totals.append(child.total)
        params += child.params_total
        for phase, cost in child.by_phase.items():
            if phase in phases:
                phases[phase].append(cost)
            else:
                phases[phase] = [cost]
    node.total, node.params_total = _sum(totals), params
    if len(phases) == 1:
        (phase, costs), = phases.items()
        if len(costs) == len(totals) and all(a is b for a, b in zip(costs, totals)):
            node.by_phase = {phase: node.total}      # one phase, the same costs: the same sum
            return
    node.by_phase = {phase: _sum(costs) for phase, costs in phases.items()}

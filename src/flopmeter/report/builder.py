"""Build a Report from a model and its Trace: cost each event, attribute, sum the tree."""

from __future__ import annotations

from collections import Counter, defaultdict

import torch
from torch import nn

from ..cost import ZERO, Cost, get_convention
from ..errors import UnsupportedOpsError
from ..formulas import REGISTRY, UNSUPPORTED, Registry
from ..trace.events import tensors_in
from ..trace.run import Trace
from .model import ModuleNode, OpRow, Report, TensorStats
from .packed import packed_weights


def tensor_stats(named) -> TensorStats:
    count = trainable = tensors = 0
    by_dtype: dict[str, int] = defaultdict(int)
    for _, t in named:
        n = t.numel()
        count += n
        tensors += 1
        trainable += n if t.requires_grad else 0
        by_dtype[str(t.dtype).removeprefix("torch.")] += n * t.element_size()
    return TensorStats(count, trainable, count - trainable, tensors, dict(by_dtype))


def build_report(model: nn.Module, trace: Trace, *, registry: Registry | None = None,
                 convention: str = "dot", strict: bool = False, causal: str = "full") -> Report:
    registry = registry or REGISTRY
    conv = get_convention(convention)

    rows: list[OpRow] = []
    own: dict[str, Cost] = defaultdict(Cost)
    unsupported: Counter = Counter()
    for ev in trace.events:
        status, cost = registry.classify(ev)
        rows.append(OpRow(ev, status, cost))
        if status == UNSUPPORTED:
            unsupported[ev.op] += 1
        elif not cost.is_zero:
            own[ev.module] = own[ev.module] + cost
    if strict and unsupported:
        raise UnsupportedOpsError(dict(unsupported))

    params_own: dict[str, int] = defaultdict(int)
    named_params = [*model.named_parameters(), *packed_weights(model)]   # + quantized modules' packed weights
    for name, p in named_params:                      # unique tensors, canonical names
        params_own[name.rpartition(".")[0]] += p.numel()

    nodes: dict[str, ModuleNode] = {}
    for path, module in model.named_modules():
        outs = trace.outputs.get(path)
        nodes[path] = ModuleNode(path, type(module).__name__, trace.calls.get(path, 0), own.get(path, ZERO),
                                 ZERO, params_own.get(path, 0), 0, tensors_in(outs[0]) if outs else [])
        if path:
            nodes[path.rpartition(".")[0]].children.append(nodes[path])
    root = nodes[""]
    _sum_tree(root)

    return Report(
        model=type(model).__name__, convention=conv.name, mode=trace.mode, device=trace.device,
        inference=trace.inference, torch_version=torch.__version__, inputs=list(trace.inputs), root=root,
        ops=rows, unsupported=dict(unsupported),
        params=tensor_stats(named_params), buffers=tensor_stats(model.named_buffers()), causal=causal,
    )


def _sum_tree(node: ModuleNode) -> None:
    total, params = node.own, node.params_own
    for child in node.children:
        _sum_tree(child)
        total = total + child.total
        params += child.params_total
    node.total, node.params_total = total, params


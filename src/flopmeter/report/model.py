"""The Report: plain dataclasses, built by ``report.builder``; the library never prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from ..cost import Cost, get_convention
from ..trace.events import OpEvent, TensorRef

SCHEMA = "flopmeter.report/2"      # docs/report-schema.md; src/flopmeter/report/schema.json


def tensor_dict(t) -> dict:
    """A tensor as a report writes it (schema 2): dtype and shape as fields, and the display string."""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "display": repr(t)}


@dataclass(frozen=True)
class TensorStats:
    """Counts of unique parameters (or buffers): elements, trainable/frozen, bytes by dtype."""

    count: int = 0
    trainable: int = 0
    frozen: int = 0
    tensors: int = 0
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())

    def to_dict(self) -> dict:
        return {"count": self.count, "trainable": self.trainable, "frozen": self.frozen,
                "tensors": self.tensors, "bytes": self.bytes, "bytes_by_dtype": dict(self.bytes_by_dtype)}


@dataclass
class ModuleNode:
    """One module of the model. ``own`` = ops that ran directly in it; ``total`` = own + children."""

    path: str
    type: str
    calls: int
    own: Cost
    total: Cost
    params_own: int
    params_total: int
    outputs: list = field(default_factory=list)      # output metas of its first call
    children: list["ModuleNode"] = field(default_factory=list)
    by_phase: dict = field(default_factory=dict)      # phase → Cost of the subtree (forward, backward, …)

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else ""

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1

    def walk(self) -> Iterator["ModuleNode"]:
        yield self
        for c in self.children:
            yield from c.walk()

    def to_dict(self, convention: str) -> dict:
        return {
            "path": self.path, "type": self.type, "calls": self.calls,
            "params_own": self.params_own, "params_total": self.params_total,
            "own": self.own.to_dict(), "total": self.total.to_dict(),
            "flops_total": self.total.flops(convention),
            "outputs": [tensor_dict(t) for t in self.outputs if isinstance(t, TensorRef)],
            "children": [c.to_dict(convention) for c in self.children],
            **({"by_phase": {p: {**c.to_dict(), "flops": c.flops(convention)} for p, c in self.by_phase.items()}}
               if set(self.by_phase) - {"forward"} else {}),
        }


@dataclass(frozen=True)
class OpRow:
    """One executed op: its event, how it was classified (costed/free/unsupported), its Cost."""

    event: OpEvent
    status: str
    cost: Cost

    @property
    def op(self) -> str:
        return self.event.op

    @property
    def module(self) -> str:
        return self.event.module

    def to_dict(self) -> dict:
        ev = self.event
        return {"op": f"{ev.op}.{ev.overload}", "module": ev.module, "phase": ev.phase, "status": self.status,
                "inputs": [tensor_dict(t) for t in ev.inputs], "outputs": [tensor_dict(t) for t in ev.outputs],
                "cost": self.cost.to_dict()}


@dataclass
class Report:
    model: str
    convention: str
    mode: str
    device: str
    inference: bool
    torch_version: str
    inputs: list[TensorRef]
    root: ModuleNode
    ops: list[OpRow]
    unsupported: dict[str, int]
    params: TensorStats
    buffers: TensorStats
    causal: str = "full"          # causal masks counted in full, or only their unmasked pairs
    trace: Any = field(default=None, repr=False, compare=False)      # the Trace it was built from
    strict: bool = False
    registry: Any = field(default=None, repr=False, compare=False)   # the registry it was costed with
    memory: Any = field(default=None, repr=False, compare=False)     # flopmeter.memory.MemoryReport, when asked
    unsupported_by_phase: dict = field(default_factory=dict)          # phase → {op: calls}
    training: dict | None = None      # a training step's memory: saved, gradients, optimizer state, peak
    assumptions: Any = field(default=None, repr=False, compare=False)   # analyses.assumptions.Assumptions: what a
    #                                   sizing answer (memory, a training step's memory) assumes

    @property
    def kernels(self) -> dict | None:
        """The kernels the run took (``trace.extra["kernels"]``): the device whose rules were used
        (``target``: name, compute capability, cuDNN; absent for a CPU run), the route (fake cuda
        tensors, or CPU fakes standing in for them), each group of attention calls with its
        backend, op, calls and the backends refused before it (``attention``), dropout's kernel
        and mask dtype, the cuBLAS workspace the device's reserve holds, and notes."""
        trace = self.trace
        return trace.extra.get("kernels") if trace is not None else None

    @property
    def by_phase(self) -> dict[str, Cost]:
        """phase → Cost of the whole model (``forward``; a training step adds ``backward``,
        ``recompute`` and ``optimizer``)."""
        return dict(self.root.by_phase)

    # -- totals -------------------------------------------------------------
    @property
    def total(self) -> Cost:
        return self.root.total

    @property
    def macs(self) -> int:
        return self.total.macs

    @property
    def flops(self) -> int:
        """FLOPs under this report's convention (see ``convention``)."""
        return self.total.flops(self.convention)

    def flops_in(self, convention: str) -> int:
        """FLOPs under another convention, from the same trace."""
        return self.total.flops(get_convention(convention))

    def with_convention(self, convention: str) -> "Report":
        return replace(self, convention=get_convention(convention).name)

    def recost(self, *, registry=None, causal: str | None = None, convention: str | None = None) -> "Report":
        """The same trace costed again with another registry (overrides), causal counting or
        convention — no new run."""
        from .builder import build_report

        if self.trace is None:
            from ..errors import InputError
            raise InputError("this report keeps no trace to re-cost",
                             hint="count the model again, or load its saved trace (.fmtrace) with report_from_trace")
        report = build_report(self.trace, registry=registry if registry is not None else self.registry,
                              convention=convention or self.convention, strict=self.strict,
                              causal=causal or self.causal)
        report.model = self.model
        return report

    # -- navigation ---------------------------------------------------------
    def modules(self) -> Iterator[ModuleNode]:
        return self.root.walk()

    def module(self, path: str) -> ModuleNode:
        for node in self.modules():
            if node.path == path:
                return node
        from ..errors import InputError, did_you_mean

        raise InputError(f"no module '{path}' in {self.model}",
                         hint=did_you_mean(path, [n.path for n in self.modules()], n=3, fmt="{!r}",
                                          otherwise="'flopmeter SPEC --depth -1' lists the module paths"))

    def by_op(self) -> dict[str, tuple[int, Cost]]:
        """op name → (calls, summed Cost), costed and free ops alike."""
        out: dict[str, tuple[int, Cost]] = {}
        for row in self.ops:
            calls, cost = out.get(row.op, (0, Cost()))
            out[row.op] = (calls + 1, cost + row.cost)
        return out

    def macs_by_precision(self, registry=None) -> dict[str, int]:
        """MACs by the precision they run in: ``{"float32": …, "int8": …, "float8_e4m3fn": …}``
        (precisions as ``registry``, by default the built-in one, names them)."""
        from .precision import macs_by_precision
        return macs_by_precision(self, registry)

    # -- serialisation ------------------------------------------------------
    def to_dict(self, *, ops: bool = True) -> dict:
        conv = get_convention(self.convention)
        d = {
            "schema": SCHEMA,
            "model": self.model,
            "convention": {"name": conv.name, "description": conv.description},
            "causal": self.causal,
            "mode": self.mode, "device": self.device, "inference": self.inference,
            "torch_version": self.torch_version,
            "inputs": [tensor_dict(t) for t in self.inputs],
            "totals": {"macs": self.macs, "flops": self.flops, **self.total.to_dict(),
                       "flops_by_convention": {name: self.flops_in(name) for name in ("dot", "all", "exact", "mac")}},
            "params": self.params.to_dict(),
            "buffers": self.buffers.to_dict(),
            "unsupported": dict(self.unsupported),
            "modules": self.root.to_dict(conv.name),
        }
        if self.kernels is not None:
            d["kernels"] = self.kernels
        if self.memory is not None:
            d["memory"] = self.memory.to_dict()
        if self.training is not None:
            d["totals_by_phase"] = {p: {**c.to_dict(), "flops": c.flops(conv)} for p, c in self.by_phase.items()}
            d["unsupported_by_phase"] = self.unsupported_by_phase
            d["training"] = {k: v for k, v in self.trace.options.items() if k in ("loss", "optimizer")} | self.training
        checkpoint = self.trace.extra.get("checkpoint") if self.trace is not None else None
        if checkpoint is not None:      # a checkpoint's header (frontends/checkpoint): its tensors and totals
            d["checkpoint"] = checkpoint
        if self.assumptions is not None:
            d["assumptions"] = self.assumptions.to_dict()
        if ops:
            d["ops"] = [r.to_dict() for r in self.ops]
        return d

    def to_json(self, *, indent: int | None = 2, ops: bool = True) -> str:
        return json.dumps(self.to_dict(ops=ops), indent=indent)

    def to_dataframe(self, view: str = "modules"):
        """A pandas DataFrame (the ``dataframe`` extra): one row per module, or per op."""
        try:
            import pandas as pd
        except ImportError:
            from ..errors import MissingDependencyError
            raise MissingDependencyError("pandas", "dataframe") from None
        if view == "ops":
            records = [{"module": r.module, "op": f"{r.event.op}.{r.event.overload}", "status": r.status,
                        "inputs": ", ".join(map(repr, r.event.inputs)), **r.cost.to_dict(),
                        "flops": r.cost.flops(self.convention)} for r in self.ops]
        elif view == "modules":
            records = [{"path": n.path, "type": n.type, "depth": n.depth, "calls": n.calls,
                        "params_own": n.params_own, "params_total": n.params_total,
                        **n.total.to_dict(), "flops": n.total.flops(self.convention)} for n in self.modules()]
        else:
            from ..errors import OptionsError
            raise OptionsError(f"unknown view '{view}'", hint="use 'modules' or 'ops'")
        return pd.DataFrame.from_records(records)

    def __repr__(self) -> str:
        """Short: the model, its totals and the convention (the full tree is ``rich.print(report)``)."""
        unsupported = sum(self.unsupported.values())
        return (f"Report(model={self.model!r}, params={self.params.count:,}, macs={self.macs:,}, "
                f"flops={self.flops:,}, convention={self.convention!r}, mode={self.mode!r}, "
                f"unsupported={unsupported:,} call(s))")

    def __rich__(self):
        from ..render.terminal import render
        return render(self)

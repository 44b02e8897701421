"""Collectives as events: every collective op of the traced step, with its group and bytes.

A collective reaches the dispatcher as an op like any other — ``c10d._allgather_base_`` and
``c10d._reduce_scatter_base_`` from FSDP2, ``_c10d_functional.all_reduce`` and
``all_gather_into_tensor`` from DTensor — and is recorded as an event of the trace. This module
reads them back as :class:`Collective` records: the kind, the process group (the mesh dimension
it spans, its size and ranks), the bytes, the phase and the module it ran in.

``bytes`` is the full buffer S of the cost model (:mod:`.cluster`): the tensor an all-reduce or a
broadcast reduces or sends, the output of an all-gather, the input of a reduce-scatter or an
all-to-all (summed over the tensors of a coalesced call). ``wait_tensor`` and barriers move no
data and are not collectives here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ...trace.events import tensors_in

# op (namespace.name) → kind
KINDS = {
    "c10d.allreduce_": "all_reduce", "c10d.allreduce_coalesced_": "all_reduce",
    "c10d._allgather_base_": "all_gather", "c10d.allgather_": "all_gather",
    "c10d.allgather_into_tensor_coalesced_": "all_gather",
    "c10d._reduce_scatter_base_": "reduce_scatter", "c10d.reduce_scatter_": "reduce_scatter",
    "c10d.reduce_scatter_tensor_coalesced_": "reduce_scatter",
    "c10d.broadcast_": "broadcast", "c10d.alltoall_base_": "all_to_all", "c10d.alltoall_": "all_to_all",
    "_c10d_functional.all_reduce": "all_reduce", "_c10d_functional.all_reduce_": "all_reduce",
    "_c10d_functional.all_reduce_coalesced": "all_reduce", "_c10d_functional.all_reduce_coalesced_": "all_reduce",
    "_c10d_functional.all_gather_into_tensor": "all_gather", "_c10d_functional.all_gather_into_tensor_out": "all_gather",
    "_c10d_functional.all_gather_into_tensor_coalesced": "all_gather",
    "_c10d_functional_autograd.all_gather_into_tensor": "all_gather",
    "_c10d_functional.reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional.reduce_scatter_tensor_out": "reduce_scatter",
    "_c10d_functional.reduce_scatter_tensor_coalesced": "reduce_scatter",
    "_c10d_functional_autograd.reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional.all_to_all_single": "all_to_all", "_c10d_functional_autograd.all_to_all_single": "all_to_all",
    "_dtensor.shard_dim_alltoall": "all_to_all",
    "_c10d_functional.broadcast": "broadcast", "_c10d_functional.broadcast_": "broadcast",
}
COMM_NAMESPACES = ("c10d.", "_c10d_functional.", "_c10d_functional_autograd.", "_dtensor.")
# the argument that holds the data S is measured on, per kind (None: the op's outputs)
_DATA_ARGS = {"all_reduce": ("tensors", "input", "inputs"), "broadcast": ("tensors", "input"),
              "reduce_scatter": ("input_tensor", "input", "inputs", "input_tensors"),
              "all_to_all": ("input", "input_tensor", "input_tensors")}


@dataclass(frozen=True)
class Collective:
    kind: str                  # all_reduce, all_gather, reduce_scatter, all_to_all, broadcast
    group: str                 # the mesh dimension it spans: "tp", "dp" or "world"
    size: int                  # ranks in the group
    ranks: tuple[int, ...]
    bytes: int                 # the full buffer S (module docstring)
    dtype: str
    phase: str                 # forward, backward, recompute, optimizer
    module: str
    op: str                    # the torch op, or "modelled" for one the plan adds analytically
    source: str = "traced"     # "traced" or "modelled"
    event: int = -1            # its index among the trace's events (-1: modelled)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "group": self.group, "size": self.size, "bytes": self.bytes, "dtype": self.dtype,
                "phase": self.phase, "module": self.module, "op": self.op, "source": self.source}


def is_comm(op: str) -> bool:
    return op.startswith(COMM_NAMESPACES)


def _data_bytes(ev, kind: str) -> tuple[int, str]:
    names = _DATA_ARGS.get(kind)
    if names is None:                     # all_gather: what it outputs
        out = ev.arg("output_tensor", None) if ev.op.startswith("c10d.") else None
        if out is None and ev.op.startswith("c10d."):
            out = ev.arg("outputs", None) or ev.arg("output_tensors", None)
        tensors = tensors_in(out) if out is not None else [t for t in ev.outputs]
    else:
        tensors = []
        for name in names:
            value = ev.arg(name, None)
            if value is not None:
                tensors = tensors_in(value)
                break
    dtype = str(tensors[0].dtype).removeprefix("torch.") if tensors else "?"
    return sum(t.nbytes for t in tensors), dtype


def _group_of(ev):
    group = ev.arg("process_group", None)
    if group is None:
        group = ev.arg("group_name", None)
    return group


class Groups:
    """Process group → (mesh dimension name, ranks), read while the process groups exist."""

    def __init__(self, meshes):
        import torch.distributed as dist
        self.dist = dist
        self.names: dict[str, str] = {}
        for dim in ("dp", "tp"):
            try:
                pg = meshes.mesh.get_group(dim)
            except (RuntimeError, ValueError, KeyError):
                continue
            self.names.setdefault(pg.group_name, dim)
        self.names.setdefault(dist.group.WORLD.group_name, "world")
        self._cache: dict[str, tuple[str, tuple[int, ...]]] = {}

    def resolve(self, group) -> tuple[str, tuple[int, ...]]:
        from torch.distributed.distributed_c10d import _resolve_process_group
        if isinstance(group, str):
            pg = _resolve_process_group(group)
        else:
            from torch._C._distributed_c10d import ProcessGroup
            pg = ProcessGroup.unbox(group) if not isinstance(group, ProcessGroup) else group
        name = pg.group_name
        found = self._cache.get(name)
        if found is None:
            ranks = tuple(self.dist.get_process_group_ranks(pg))
            found = self._cache[name] = (self.names.get(name, f"group of {len(ranks)}"), ranks)
        return found


def collectives(events, groups: Groups) -> list[Collective]:
    """The collectives among ``events`` (in order), with their groups resolved by ``groups``."""
    out = []
    for i, ev in enumerate(events):
        kind = KINDS.get(ev.op)
        if kind is None:
            continue
        nbytes, dtype = _data_bytes(ev, kind)
        dim, ranks = groups.resolve(_group_of(ev))
        out.append(Collective(kind, dim, len(ranks), ranks, nbytes, dtype, ev.phase, ev.module, ev.op, event=i))
    return out


@dataclass
class CollectiveRow:
    """The collectives of one (kind, group, phase): how many, and their bytes."""

    kind: str
    group: str
    size: int
    phase: str
    count: int = 0
    bytes: int = 0
    source: str = "traced"
    sizes: dict = field(default_factory=dict)     # bytes of one call → calls

    def to_dict(self) -> dict:
        return {"kind": self.kind, "group": self.group, "size": self.size, "phase": self.phase, "count": self.count,
                "bytes": self.bytes, "source": self.source,
                "calls_by_bytes": {str(k): v for k, v in sorted(self.sizes.items())}}


def summary(items: list[Collective]) -> list[CollectiveRow]:
    """One row per (kind, group, phase, source), in first-seen order."""
    rows: dict[tuple, CollectiveRow] = {}
    for c in items:
        key = (c.kind, c.group, c.phase, c.source)
        row = rows.get(key)
        if row is None:
            row = rows[key] = CollectiveRow(c.kind, c.group, c.size, c.phase, source=c.source)
        row.count += 1
        row.bytes += c.bytes
        row.sizes[c.bytes] = row.sizes.get(c.bytes, 0) + 1
    return list(rows.values())


def signature(items: list[Collective]) -> dict[tuple, int]:
    """(kind, group size, bytes) → calls: what a real run of the same program must match."""
    out: dict[tuple, int] = defaultdict(int)
    for c in items:
        out[(c.kind, c.size, c.bytes)] += 1
    return dict(out)


__all__ = [
    "COMM_NAMESPACES",
    "KINDS",
    "Collective",
    "CollectiveRow",
    "Groups",
    "collectives",
    "is_comm",
    "signature",
    "summary",
]

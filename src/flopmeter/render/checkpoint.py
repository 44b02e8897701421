"""Views of a checkpoint's Report (``mode == "checkpoint"``) and of a model counted beside its
checkpoint (``trace.extra["checkpoint"]``):

- header: the parameters with their bytes by format, the files and how much of them was read;
- ``tree``: the tensor names' dotted paths to a depth (group, params, bytes, formats, share of bytes);
- ``tensors``: one row per tensor (name, shape, format, params, bytes, file, offset);
- the comparison with the config's model, as lines after the table (not an error).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .units import ParamCount, human, human_unit


def checkpoint_of(report) -> dict | None:
    trace = getattr(report, "trace", None)
    return trace.extra.get("checkpoint") if trace is not None else None


def is_header_only(report) -> bool:
    return report.mode == "checkpoint"


def _formats(by_format: dict, raw: bool) -> str:
    return ", ".join(f"{human_unit(v['bytes'], 'B', raw)} {k}" for k, v in
                     sorted(by_format.items(), key=lambda kv: -kv[1]["bytes"]))


def header_items(report, raw: bool = False) -> list[tuple[str, str]]:
    """The header of a checkpoint's own report."""
    c = checkpoint_of(report)
    p = report.params
    by = {k: {"bytes": v} for k, v in p.bytes_by_dtype.items()}
    items = [("model", report.model),
             ("params", (f"{human(ParamCount(p.count), raw)} in {p.tensors:,} tensors "
                        f"({human_unit(p.bytes, 'B', raw)}: {_formats(by, raw)})"))]
    items += file_items(c, raw)
    items.append(("mode", "checkpoint header: no tensor data read, nothing runs (no MACs or FLOPs)"))
    items += [("note", n) for n in report.trace.extra.get("notes", [])]
    return items


def file_items(c: dict, raw: bool) -> list[tuple[str, str]]:
    read = c["bytes_read"]
    how = (f"read {human_unit(read, 'B', raw)} of {human_unit(c['file_bytes'], 'B', raw)}" if read is not None
           else f"{human_unit(c['file_bytes'], 'B', raw)}, read by torch.load(weights_only=True, mmap=True) on meta")
    files = c["files"]
    return [("checkpoint", (f"{c['kind']}, {len(files)} file{'s' if len(files) != 1 else ''} "
                           f"({files[0]}{', …' if len(files) > 1 else ''}), {how}"))]


def comparison_items(report) -> list[tuple[str, str]]:
    """The checkpoint lines of a model counted beside its checkpoint."""
    trace = report.trace
    c = checkpoint_of(report)
    stored = {k: {"bytes": v["bytes"]} for k, v in c["by_format"].items()}
    return file_items(c, False) + [("stored", (f"{c['params']:,} params in {len(c['tensors']):,} tensors "
                                              f"({_formats(stored, False)})"))] + list(trace.extra.get(
                                                  "checkpoint_lines", []))


def _node_bytes(report) -> tuple[dict[str, int], dict[str, set]]:
    nbytes: dict[str, int] = defaultdict(int)
    formats: dict[str, set] = defaultdict(set)
    for p in report.trace.params:
        parts = p.module.split(".") if p.module else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            nbytes[key] += p.nbytes
            formats[key].add(str(p.dtype).removeprefix("torch."))
    return nbytes, formats


def tree_table(report, depth: int | None):
    from .tables import Share, Table
    t = Table(["group", "params", "bytes", "formats", "share"], [False, True, True, False, True])
    nbytes, formats = _node_bytes(report)
    total = nbytes.get("", 0) or 1
    t.keys = []
    for node in report.modules():
        if depth is not None and node.depth > depth:
            continue
        label = "  " * node.depth + (node.name or Path(report.model).name or report.model)
        t.keys.append({"path": node.path or report.model, "depth": node.depth})
        t.rows.append([label, ParamCount(node.params_total), nbytes.get(node.path, 0),
                       ", ".join(sorted(formats.get(node.path, ()))), Share(round(nbytes.get(node.path, 0) / total, 6))])
    return t


def tensors_table(report):
    from ..frontends.checkpoint.report import _order
    from .tables import Table
    c = checkpoint_of(report)
    t = Table(["tensor", "shape", "format", "params", "bytes", "file", "offset"],
              [False, False, False, True, True, False, True])
    for d in sorted(c["tensors"], key=lambda d: _order(d["name"])):
        name = d["name"] + (f" (= {', '.join(d['aliases'])})" if d["aliases"] else "")
        t.rows.append([name, "×".join(map(str, d["shape"])) or "scalar", d["format"], ParamCount(d["params"]),
                       d["bytes"], d["file"], str(d["offset"]) if d["offset"] is not None else "—"])
    return t


__all__ = ["checkpoint_of", "comparison_items", "header_items", "is_header_only", "tensors_table", "tree_table"]

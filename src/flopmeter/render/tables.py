"""Format-neutral views of a Report: a header (key/value pairs) and tables of rows.

Cells hold raw numbers; each renderer formats them (human units in the terminal and
Markdown, exact integers in CSV and with ``raw``; a :class:`Share` is shown as a percentage
and written to CSV as a number between 0 and 1). Views:

- ``tree``: the module tree to a depth (module, type, output shape, params, MACs, FLOPs, share);
- ``keras``: one row per leaf layer (layer and type, output shape, params, MACs, FLOPs), Keras-style;
- ``ops``: one row per executed op that is not free (module, op, shapes, status, MACs, FLOPs);
- ``memory``: per-module memory peaks and the live-bytes timeline (:mod:`.memory`);
- ``tensors``: one row per tensor of a checkpoint (:mod:`.checkpoint`), whose report's tree
  view is its tensor groups with their bytes.

With ``report.memory`` the header gains memory lines and the tree and Keras views a column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cost import ZERO, get_convention
from ..report import Report
from ..report.precision import low_precision
from . import checkpoint, memory
from .kernels import kernel_items
from .notes import call_note
from .units import ParamCount, human, human_unit

VIEWS = ("tree", "keras", "ops", "memory", "tensors")


@dataclass
class Table:
    columns: list[str]
    numeric: list[bool]
    rows: list[list] = field(default_factory=list)
    footer: list[tuple[str, str]] = field(default_factory=list)
    keys: list[dict] | None = None       # per row: columns CSV writes instead of the first (path, depth, calls)
    exact: bool = False                  # always exact integers (Keras-style summaries)
    curves: dict | None = None           # name → [(size, value)]: drawn log-log where a format can (scaling)
    sections: list = field(default_factory=list)   # (title, Table) shown after this one (terminal, md)

    def to_records(self) -> list[dict]:
        """One dict per row, keyed by column name (JSON output of a table)."""
        return [dict(zip(self.columns, row)) for row in self.rows]


def header_items(report: Report, raw: bool = False) -> list[tuple[str, str]]:
    if checkpoint.is_header_only(report):
        return checkpoint.header_items(report, raw)
    conv = get_convention(report.convention)
    p = report.params
    params = f"{human(ParamCount(p.count), raw)} ({human_unit(p.bytes, 'B', raw)}"
    params += f" in {' + '.join(sorted(p.bytes_by_dtype))}" if p.bytes_by_dtype else ""     # the weights' dtype
    params += f"; {human(ParamCount(p.frozen), raw)} frozen)" if p.frozen else ")"
    unsupported = sum(report.unsupported.values())
    if report.mode == "onnx":
        mode = "ONNX graph, shapes from ONNX shape inference (no tensors run)"
    else:
        mode = (f"{report.mode} tensors on {report.device}, "
                f"{'no_grad (inference)' if report.inference else 'autograd on'}, torch {report.torch_version}"
                + (", causal masks counted exactly" if report.causal == "exact" else ""))
    notes = list((getattr(report, "trace", None) and report.trace.extra.get("notes")) or [])
    items = [
        ("model", report.model),
        ("inputs", ", ".join(map(repr, report.inputs))),
        ("params", params),
        ("MACs", human_unit(report.macs, "MACs", raw) + _low_precision(report, raw)),
        ("FLOPs", f"{human_unit(report.flops, 'FLOPs', raw)}  [{conv.name}: {conv.description}]"),
        ("mode", mode),
        *kernel_items(report, raw),
        ("unsupported", "none" if not unsupported else f"{unsupported} call(s): "
         + ", ".join(f"{k} ×{v}" for k, v in sorted(report.unsupported.items()))),
    ] + [("note", n) for n in notes]
    if report.training is not None:
        items[-1:-1] = training_items(report, raw)
    return items + memory.header_lines(report, raw)


def training_items(report: Report, raw: bool) -> list[tuple[str, str]]:
    """A training step's FLOPs by phase and its memory."""
    t, opts = report.training, report.trace.options
    phases = "  ".join(f"{p} {human_unit(c.flops(report.convention), 'FLOPs', raw)}"
                       for p, c in report.by_phase.items())
    per_phase = "; ".join(f"{p}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(ops.items()))
                          for p, ops in report.unsupported_by_phase.items())
    return [
        ("training", f"loss {opts.get('loss')}, optimizer {opts.get('optimizer') or 'none'}"),
        ("by phase", phases + (f"  (unsupported — {per_phase})" if per_phase else "")),
        ("memory", f"saved for backward {human_unit(t['saved_bytes'], 'B', raw)}, "
                   f"gradients {human_unit(t['grad_bytes'], 'B', raw)}, "
                   f"optimizer state {human_unit(t['optimizer_state_bytes'], 'B', raw)}, "
                   f"peak of the step {human_unit(t['peak_bytes'], 'B', raw)} (in {t['peak_phase']}"
                   + ("; the weights as stored" if report.memory is not None and report.memory.weights.format != "stored"
                      else "") + ")"
                   + (f", autocast weight copies {human_unit(t['autocast_copy_bytes'], 'B', raw)}"
                      if t.get("autocast_copy_bytes") else "")),
    ]


def _low_precision(report: Report, raw: bool) -> str:
    """'  (of which 430 KMACs float8_e4m3fn, 32.8 KMACs int8)' when some MACs are not in float;
    '  (uint8×int8)' when all are in one such precision."""
    low = low_precision(report.macs_by_precision())
    if not low:
        return ""
    if list(low.values()) == [report.macs]:
        return f"  ({next(iter(low))})"
    return "  (of which " + ", ".join(f"{human_unit(v, 'MACs', raw)} {k}" for k, v in low.items()) + ")"


class Share(float):
    """A share of the whole (0.163): shown as '16.3%' in the terminal and Markdown, a plain
    number in CSV and JSON. Other floats in a table (ms, items/s) are shown as they are."""


def cell_text(value) -> str | None:
    """A float cell as text: a Share as a percentage, any other float as written; None for
    other cells (integers get human units, strings are escaped by their format)."""
    if isinstance(value, Share):
        return percent(value)
    if isinstance(value, float):
        return str(value)
    return None


def percent(share: float) -> str:
    """A share cell as the terminal and Markdown show it: 0.163 → '16.3%'."""
    return f"{100 * share:.1f}%"


def _shape(metas) -> str:
    return "×".join(map(str, metas[0].shape)) if metas else ""


def tree_table(report: Report, depth: int | None = 2) -> Table:
    flops_col = f"FLOPs ({report.convention})"
    t = Table(["module", "type", "output", "params", "MACs", flops_col, "share"],
              [False, False, False, True, True, True, True])
    total = report.flops or 1
    # "torchvision:resnet50" → "resnet50"; a file's "net.py:build" → the model's class
    root_label = report.root.type if ".py:" in report.model else report.model.rsplit(":", 1)[-1]
    phases = [p for p in report.by_phase if p != "forward"] if report.training is not None else []
    saved = _saved_totals(report) if phases else {}
    if phases:                      # a training step: FLOPs per phase and saved bytes (output and MACs give way)
        t = Table(["module", "type", "params", flops_col, "forward", *phases, "saved", "share"],
                  [False, False, True, True, True, *[True] * len(phases), True, True])
    t.keys = []
    paths = []
    for node in report.modules():
        if depth is not None and node.depth > depth:
            continue
        label = "  " * node.depth + (node.name or root_label)
        if node.calls > 1:
            label += f" ×{node.calls}"
        flops = node.total.flops(report.convention)
        t.keys.append({"path": node.path or report.model, "depth": node.depth, "calls": node.calls})
        if phases:
            row = [label, node.type, ParamCount(node.params_total), flops,
                   *[node.by_phase.get(p, ZERO).flops(report.convention) for p in ("forward", *phases)],
                   saved.get(node.path, 0)]
        else:
            output = _shape(node.outputs) or call_note(report, node)     # "fused into 'attn'", "not called"
            row = [label, node.type, output, ParamCount(node.params_total), node.total.macs, flops]
        t.rows.append(row + [Share(round(flops / total, 6))])
        paths.append(node.path)
    return _memory_column(t, report, paths)


def _memory_column(t: Table, report: Report, paths: list[str]) -> Table:
    if report.memory is not None:
        t.columns.append(memory.COLUMN + " (B)")
        t.numeric.append(True)
        for row, path in zip(t.rows, paths):
            row.append(memory.column(report, path))
    return t


def _saved_totals(report: Report) -> dict[str, int]:
    """Saved-for-backward bytes per module, subtree totals."""
    out: dict[str, int] = {}
    for path, nbytes in report.training["saved_by_module"].items():
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            out[key] = out.get(key, 0) + nbytes
    return out


def keras_table(report: Report) -> Table:
    """Keras' ``model.summary()`` columns (layer, output shape, params) plus MACs and FLOPs,
    which Keras never printed: one row per leaf module, or for a Keras model one row per
    top-level layer, as ``model.summary()`` has them."""
    t = Table(["Layer (type)", "Output Shape", "Param #", "MACs", f"FLOPs ({report.convention})"],
              [False, False, True, True, True], exact=True)
    trace = getattr(report, "trace", None)
    keras = trace is not None and trace.extra.get("frontend") == "keras"
    paths = []
    for node in (report.root.children if keras else report.modules()):
        if not keras and (node.children or not node.path):
            continue
        shape = "(" + ", ".join(["None", *map(str, node.outputs[0].shape[1:])]) + ")" if node.outputs else "—"
        t.rows.append([f"{node.path} ({node.type})", shape, node.params_total, node.total.macs,
                       node.total.flops(report.convention)])
        paths.append(node.path)
    _memory_column(t, report, paths)
    p = report.params
    t.footer = [("Total params", f"{p.count:,}"), ("Trainable params", f"{p.trainable:,}"),
                ("Non-trainable params", f"{p.frozen:,}")]
    return t


def ops_table(report: Report) -> Table:
    t = Table(["module", "op", "inputs", "outputs", "status", "MACs", f"FLOPs ({report.convention})"],
              [False, False, False, False, False, True, True])
    for row in report.ops:
        if row.status == "free":
            continue
        ev = row.event
        t.rows.append([ev.module or "(root)", f"{ev.op}.{ev.overload}", ", ".join(map(repr, ev.inputs)),
                       ", ".join(map(repr, ev.outputs)), row.status, row.cost.macs,
                       row.cost.flops(report.convention)])
    return t


def view_table(report: Report, view: str, depth: int | None) -> Table:
    if view == "tensors":
        return checkpoint.tensors_table(report)
    if checkpoint.is_header_only(report):
        return checkpoint.tree_table(report, depth)
    table = _view_table(report, view, depth)
    if checkpoint.checkpoint_of(report) is not None:        # a model counted beside its checkpoint
        table.footer = table.footer + checkpoint.comparison_items(report)
    return table


def _view_table(report: Report, view: str, depth: int | None) -> Table:
    if view == "keras":
        return keras_table(report)
    if view == "ops":
        return ops_table(report)
    if view == "memory":
        return memory.memory_table(report, depth)
    return tree_table(report, depth)

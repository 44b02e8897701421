"""Terminal rendering with rich: a header and a module tree table (the CLI prints it)."""

from __future__ import annotations

from ..cost import get_convention
from ..errors import MissingDependencyError
from ..report import Report
from .units import human, human_unit


def _rich():
    try:
        import rich  # noqa: F401
    except ImportError:
        raise MissingDependencyError("rich", "cli") from None


def header(report: Report, raw: bool = False):
    _rich()
    from rich.markup import escape
    from rich.table import Table

    conv = get_convention(report.convention)
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("model", escape(report.model))
    t.add_row("inputs", escape(", ".join(map(repr, report.inputs))))
    t.add_row("params", f"{human(report.params.count, raw)} ({human_unit(report.params.bytes, 'B', raw)}"
                        + (f", {human(report.params.frozen, raw)} frozen" if report.params.frozen else "") + ")")
    t.add_row("MACs", human_unit(report.macs, "MACs", raw))
    t.add_row("FLOPs", escape(f"{human_unit(report.flops, 'FLOPs', raw)}  [{conv.name}: {conv.description}]"))
    t.add_row("mode", f"{report.mode} tensors on {report.device}, "
                      f"{'no_grad (inference)' if report.inference else 'autograd on'}, torch {report.torch_version}"
                      + (", causal masks counted exactly" if report.causal == "exact" else ""))
    unsupported = sum(report.unsupported.values())
    t.add_row("unsupported", "none" if not unsupported else
              "[red]" + escape(f"{unsupported} call(s): " + ", ".join(
                  f"{k} ×{v}" for k, v in sorted(report.unsupported.items()))) + "[/red]")
    return t


def module_table(report: Report, depth: int | None = 2, raw: bool = False):
    _rich()
    from rich.table import Table

    total_flops = report.flops or 1
    t = Table(show_edge=False, header_style="bold")
    t.add_column("module", overflow="fold")
    t.add_column("type", overflow="fold")
    t.add_column("output", overflow="fold")
    for name in ("params", "MACs", f"FLOPs ({report.convention})", "share"):
        t.add_column(name, justify="right", no_wrap=True, min_width=len(name) if raw else 6)
    for node in report.modules():
        if depth is not None and node.depth > depth:
            continue
        label = "  " * node.depth + (node.name or report.model.rsplit(":", 1)[-1])
        if node.calls > 1:
            label += f" ×{node.calls}"
        out = "×".join(map(str, node.outputs[0].shape)) if node.outputs else ""
        flops = node.total.flops(report.convention)
        t.add_row(label, node.type, out, human(node.params_total, raw),
                  human(node.total.macs, raw), human(flops, raw), f"{100 * flops / total_flops:.1f}%")
    return t

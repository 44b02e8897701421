"""The roofline plot (the ``plots`` extra, matplotlib): one point per layer at its arithmetic
intensity (FLOPs / byte) and FLOP/s — predicted, and achieved where measured — under the
device's roofs: min(peak, intensity × bandwidth) for each matrix dtype the model uses and
for the vector units."""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import InputError, MissingDependencyError
from .roofline import Roofline

FORMATS = (".png", ".svg", ".pdf")


def _figure_class():
    """matplotlib's Figure, used directly (no pyplot, no backend switched: nothing global changes)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("matplotlib", "plots") from None
    return Figure


def check_plot_path(path: str | Path) -> Path:
    """A plot path with a known suffix in an existing folder, and matplotlib installed (checked
    before a long measurement, so that its results are not lost to a typo)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"cannot tell the plot format of '{path}'", hint=f"use one of {', '.join(FORMATS)}")
    if not path.parent.exists():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist",
                         hint="give the plot a path in an existing folder")
    _figure_class()
    return path


def plot_roofline(rl: Roofline, path: str | Path, *, title: str | None = None) -> Path:
    """Write the plot to ``path`` (.png, .svg or .pdf); returns the path."""
    from ..files import write_file

    path = check_plot_path(path)
    figure = roofline_figure(rl, title=title)
    write_file(path, lambda f: figure.savefig(f, format=path.suffix[1:].lower()), example="roofline.png")
    return path


def roofline_svg(rl: Roofline, *, title: str | None = None) -> bytes:
    """The plot as SVG bytes (for the HTML report)."""
    buffer = io.BytesIO()
    roofline_figure(rl, title=title).savefig(buffer, format="svg")
    return buffer.getvalue()


def roofline_figure(rl: Roofline, *, title: str | None = None):
    """The plot as a matplotlib Figure."""
    Figure = _figure_class()
    dev = rl.device
    layers = [m for m in rl.leaves() if m.flops and m.bytes]
    if not layers:
        raise InputError("no layer of this model does arithmetic; there is nothing to plot",
                         hint="a roofline plot needs layers that compute (matrix products, convolutions, …)")
    xs = [m.intensity for m in layers]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [dev.matrix["fp32"] / dev.bandwidth]) * 4
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    used = sorted({e.dtype for e in rl.ops if e.flops and e.dtype in dev.matrix}) or ["fp32"]
    for key in used:
        peak = dev.matrix[key]
        ax.plot(grid, [min(peak, x * dev.bandwidth) for x in grid], lw=1.5, label=f"roof: {key} matmul {peak / 1e12:.3g} TFLOP/s")
    ax.plot(grid, [min(dev.vector, x * dev.bandwidth) for x in grid], lw=1, ls="--", color="grey",
            label=f"roof: vector {dev.vector / 1e12:.3g} TFLOP/s; memory {dev.bandwidth / 1e9:.4g} GB/s")
    colours = {"compute": "tab:red", "memory": "tab:blue"}
    for bound in ("compute", "memory"):
        pts = [m for m in layers if m.bound == bound]
        if pts:
            ax.scatter([m.intensity for m in pts], [m.flops / m.time_s for m in pts], s=18, c=colours[bound],
                       alpha=0.7, label=f"predicted, {bound}-bound ({len(pts)} layers)")
    measured = [m for m in layers if m.measured_s]
    if measured:
        ax.scatter([m.intensity for m in measured], [m.achieved_flops for m in measured], s=22, marker="x",
                   c="black", alpha=0.8, label=f"measured ({len(measured)} layers)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs / byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(title or f"{rl.report.model} on {dev.name}, batch {rl.batch}")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8, loc="lower right")
    return fig


__all__ = ["FORMATS", "check_plot_path", "plot_roofline", "roofline_figure", "roofline_svg"]

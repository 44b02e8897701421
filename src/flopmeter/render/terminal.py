"""Terminal rendering with rich (the ``cli`` extra)."""

from __future__ import annotations

from ..errors import MissingDependencyError
from ..report import Report
from .escape import visible
from .tables import Table, cell_text, header_items, view_table
from .units import human


def _rich():
    try:
        import rich  # noqa: F401
    except ImportError:
        raise MissingDependencyError("rich", "cli") from None


def to_rich(table: Table, raw: bool = False):
    _rich()
    from rich.markup import escape
    from rich.table import Table as RichTable

    raw = raw or table.exact
    t = RichTable(show_edge=False, header_style="bold")
    for name, numeric in zip(table.columns, table.numeric):
        if numeric:
            t.add_column(escape(visible(name)), justify="right", no_wrap=True, min_width=6)
        else:
            t.add_column(escape(visible(name)), overflow="fold")
    for row in table.rows:
        t.add_row(*(human(c, raw) if isinstance(c, int) else cell_text(c) if isinstance(c, float) else escape(visible(c))
                    for c in row))
    return t


def render(report: Report, *, view: str = "tree", depth: int | None = 2, raw: bool = False):
    """A rich renderable: the header, a blank line, the chosen view, its footer."""
    _rich()
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table as RichTable

    head = RichTable.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key, value in header_items(report, raw):
        style = "red" if key == "unsupported" and value != "none" else ""
        head.add_row(key, f"[{style}]{escape(visible(value))}[/{style}]" if style else escape(visible(value)))
    table = view_table(report, view, depth)
    parts = [head, "", to_rich(table, raw)]
    if table.footer:
        foot = RichTable.grid(padding=(0, 2))
        for key, value in table.footer:
            foot.add_row(escape(visible(key)) + ":", escape(visible(value)))
        parts += ["", foot]
    return Group(*parts)


def rich_text(renderable, width: int = 120) -> str:
    """Render a rich object to plain text (for files and pipes), without trailing spaces."""
    import os

    _rich()
    from rich.console import Console
    with open(os.devnull, "w") as sink:
        console = Console(width=width, record=True, file=sink, color_system=None)
        console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().split("\n"))

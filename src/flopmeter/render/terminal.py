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


# columns left out, in this order, when a table is wider than the terminal: a cell is never
# split across lines and a number or shape never shortened; the first column and the counts
# stay (past the last of these, only name columns are shortened, with an ellipsis)
DROP_ORDER = ("share", "status", "inputs", "outputs", "shapes", "output", "Output Shape", "type", "act. peak",
              "FLOPs/byte",
              "compute", "memory", "bytes", "measured", "predicted / measured")


class FittedTable:
    """A rich table that fits the console's width by leaving out whole columns (in
    :data:`DROP_ORDER`) instead of wrapping cells; a caption names what was left out."""

    def __init__(self, table: Table, raw: bool = False):
        from rich.markup import escape
        self.table = table
        raw = raw or table.exact
        self.cells = [[human(c, raw) if isinstance(c, int) else cell_text(c) if isinstance(c, float)
                       else escape(visible(c)) for c in row] for row in table.rows]

    def build(self, drop: tuple[str, ...] = (), limits: dict[int, int] | None = None):
        """The rich table without the ``drop`` columns; ``limits``: column → the most cells a
        text column may take (longer names end in an ellipsis; numbers are never shortened)."""
        from rich.markup import escape
        from rich.table import Table as RichTable
        keep = [i for i, name in enumerate(self.table.columns) if name not in drop]
        t = RichTable(show_edge=False, header_style="bold")
        for i in keep:
            name, numeric = self.table.columns[i], self.table.numeric[i]
            t.add_column(escape(visible(name)), justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis",
                         min_width=6 if numeric else None, max_width=(limits or {}).get(i))
        for row in self.cells:
            t.add_row(*(row[i] for i in keep))
        if drop:
            t.caption = f"not shown at this width: {', '.join(drop)} (--format md shows every column)"
        return t

    def fitted(self, console, options):
        from rich.measure import Measurement
        drop: tuple[str, ...] = ()
        t = self.build()
        unbounded = options.update_width(10**6)         # the width every cell needs on one line
        for name in DROP_ORDER:
            if Measurement.get(console, unbounded, t).maximum <= options.max_width:
                return t
            if name in self.table.columns[1:]:
                drop += (name,)
                t = self.build(drop)
        excess = Measurement.get(console, unbounded, t).maximum - options.max_width
        if excess <= 0:
            return t
        # still too wide: shorten the widest text columns (names, op names), one cell at a time
        widths = {i: self.width(i) for i, name in enumerate(self.table.columns)
                  if name not in drop and not self.table.numeric[i]}
        while excess > 0 and widths and max(widths.values()) > 8:
            widest = max(widths, key=widths.__getitem__)
            widths[widest] -= 1
            excess -= 1
        return self.build(drop, widths)

    def width(self, i: int) -> int:
        from rich.text import Text
        return max([Text.from_markup(self.table.columns[i]).cell_len]
                   + [Text.from_markup(row[i]).cell_len for row in self.cells])

    def __rich_console__(self, console, options):
        yield self.fitted(console, options)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement
        return Measurement.get(console, options, self.fitted(console, options))


def to_rich(table: Table, raw: bool = False):
    _rich()
    return FittedTable(table, raw)


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
            foot.add_row(escape(visible(key)) + (":" if key else ""), escape(visible(value)))
        parts += ["", foot]
    for title, section in table.sections:
        parts += ["", f"[bold]{escape(visible(title))}[/bold]", to_rich(section, raw)]
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

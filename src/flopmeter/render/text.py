"""Plain-text formats: Markdown (human units unless raw) and CSV (exact integers)."""

from __future__ import annotations

import csv
import io

from ..report import Report
from .tables import Table, header_items, view_table
from .escape import csv_cell, md_text
from .units import human


def _md_cell(value, raw: bool) -> str:
    return human(value, raw) if isinstance(value, int) else md_text(str(value))


def markdown_table(table: Table, raw: bool = False) -> str:
    raw = raw or table.exact
    lines = ["| " + " | ".join(map(md_text, table.columns)) + " |",
             "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"]
    for row in table.rows:
        cells = [_md_cell(c, raw) for c in row]
        if cells and not table.numeric[0]:
            cells[0] = cells[0].replace("  ", "&nbsp;&nbsp;") if cells[0].startswith(" ") else cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(report: Report, *, view: str = "tree", depth: int | None = 2, raw: bool = False) -> str:
    out = [f"**{key}**: {md_text(value)}  " for key, value in header_items(report, raw)]
    table = view_table(report, view, depth)
    out += ["", markdown_table(table, raw)]
    if table.footer:
        out += [""] + [f"**{md_text(k)}**: {md_text(v)}  " for k, v in table.footer]
    return "\n".join(out) + "\n"


def to_csv(report: Report, *, view: str = "tree", depth: int | None = 2) -> str:
    return table_csv(view_table(report, view, depth))


def table_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if table.keys is not None:      # the tree: full module paths instead of indented names
        writer.writerow(["path", *table.columns[1:]])
        for key, row in zip(table.keys, table.rows):
            writer.writerow([csv_cell(c) for c in (key, *row[1:])])
    else:
        writer.writerow(table.columns)
        writer.writerows([csv_cell(c) for c in row] for row in table.rows)
    return buf.getvalue()

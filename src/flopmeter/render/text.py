"""Plain-text formats: Markdown (human units unless raw) and CSV (exact integers; a share is a
number between 0 and 1; no unit glyphs in numeric columns)."""

from __future__ import annotations

import csv
import io

from ..report import Report
from .escape import csv_cell, md_text, visible
from .tables import Table, cell_text, header_items, view_table
from .units import human


def facts_text(items: list[tuple[str, str]], fmt: str) -> str:
    """A command's header facts (label, text) as Markdown lines (``md``, every string escaped) or
    as aligned plain text (the terminal's ``table`` format)."""
    if fmt == "md":
        return "\n".join(f"**{md_text(k)}**: {md_text(v)}  " for k, v in items)
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{visible(k).ljust(width)}  {visible(v)}" for k, v in items)


def _md_cell(value, raw: bool) -> str:
    return human(value, raw) if isinstance(value, int) else cell_text(value) if isinstance(value, float) \
        else md_text(str(value))


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
    out = [f"- **{key}**: {md_text(value)}" for key, value in header_items(report, raw)]
    table = view_table(report, view, depth)
    out += ["", markdown_table(table, raw)]
    if table.footer:
        out += [""] + [f"- **{md_text(k)}**: {md_text(v)}" if k else f"- {md_text(v.strip())}"
                       for k, v in table.footer]
    for title, section in table.sections:
        out += ["", f"**{md_text(title)}**", "", markdown_table(section, raw)]
    return "\n".join(out) + "\n"


def to_csv(report: Report, *, view: str = "tree", depth: int | None = 2) -> str:
    return table_csv(view_table(report, view, depth))


def table_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if table.keys:      # the tree: path (the model's name for the root), depth and calls, not indented names
        keys = [k if isinstance(k, dict) else {"path": k} for k in table.keys]     # a plain path is a key too
        writer.writerow([*keys[0], *table.columns[1:]])
        for key, row in zip(keys, table.rows):
            writer.writerow([csv_cell(c) for c in (*key.values(), *row[1:])])
    else:
        writer.writerow(table.columns)
        writer.writerows([csv_cell(c) for c in row] for row in table.rows)
    return buf.getvalue()

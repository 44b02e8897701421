"""Renderers: turn a Report (or a format-neutral Table) into text. The library never prints; the CLI does.

``RENDERERS`` is the one table from a format name to its renderer; every command looks a
format up here. A renderer is ``render(report, view=, depth=, raw=) -> str`` and has a
``table(Table, raw=) -> str`` twin for tables that are not a single report (compare, diff,
sweeps). Adding a format is one entry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from ..errors import OptionsError, did_you_mean
from .escape import visible_text


@dataclass(frozen=True)
class Renderer:
    name: str
    suffixes: tuple[str, ...]
    report: Callable[..., str]          # (report, *, view, depth, raw) -> str
    table: Callable[..., str]           # (Table, raw) -> str


def _table_report(report, *, view="tree", depth=2, raw=False, width=120):
    from .terminal import render, rich_text
    return rich_text(render(report, view=view, depth=depth, raw=raw), width)


def _table_table(table, raw=False):
    from .terminal import rich_text, to_rich
    return rich_text(to_rich(table, raw))


def _md_report(report, *, view="tree", depth=2, raw=False):
    from .text import to_markdown
    return to_markdown(report, view=view, depth=depth, raw=raw)


def _md_table(table, raw=False):
    from .text import markdown_table
    return markdown_table(table, raw)


def _csv_report(report, *, view="tree", depth=2, raw=False):
    from .text import to_csv
    return to_csv(report, view=view, depth=depth)


def _csv_table(table, raw=False):
    from .text import table_csv
    return table_csv(table)


def _json_report(report, *, view="tree", depth=2, raw=False):
    return report.to_json(ops=view == "ops")


def _json_table(table, raw=False):
    import json
    return json.dumps(table.to_records(), indent=2)


def _html_report(report, *, view="tree", depth=2, raw=False):
    from .html import report_html
    return report_html(report, view=view, depth=depth, raw=raw)


def _html_table(table, raw=False):
    from .html import table_html
    return table_html(table, raw)


RENDERERS: dict[str, Renderer] = {r.name: r for r in (
    Renderer("table", (".txt",), _table_report, _table_table),
    Renderer("md", (".md",), _md_report, _md_table),
    Renderer("csv", (".csv",), _csv_report, _csv_table),
    Renderer("json", (".json",), _json_report, _json_table),
    Renderer("html", (".html", ".htm"), _html_report, _html_table),
)}


def _visible(render: Callable[..., str]) -> Callable[..., str]:
    """A renderer whose text has no raw control characters but newlines and tabs (model names are
    user data and may hold terminal escape sequences)."""
    @functools.wraps(render)
    def rendered(*args, **kwargs) -> str:
        return visible_text(render(*args, **kwargs))
    return rendered


RENDERERS = {name: r if name == "json" else Renderer(r.name, r.suffixes, _visible(r.report), _visible(r.table))
             for name, r in RENDERERS.items()}


def get_renderer(name: str) -> Renderer:
    try:
        return RENDERERS[name]
    except KeyError:
        raise OptionsError(f"unknown output format '{name}'",
                           hint=did_you_mean(name, RENDERERS, otherwise=f"one of: {', '.join(RENDERERS)}")) from None


def format_of_suffix(suffix: str) -> str | None:
    """'.md' → 'md'; None when no renderer writes that suffix."""
    for r in RENDERERS.values():
        if suffix.lower() in r.suffixes:
            return r.name
    return None


__all__ = ["RENDERERS", "Renderer", "format_of_suffix", "get_renderer"]

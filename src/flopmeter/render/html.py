"""A self-contained HTML report: one file, scripts and styles inline, no network request.

Built from ``report.to_dict()`` so that sections other engineers add to the report dict
(``memory``, measured timings, roofline, …) appear when their keys are there:

- the header facts (model, inputs, convention, totals, mode, torch version);
- a treemap of the module tree (hand-made SVG + a few hundred lines of JavaScript in
  ``assets/report.js``), sized by MACs, switchable to FLOPs, params, bytes and any numeric
  per-module figure the report dict carries (``memory``, ``time``, …); click to zoom;
- a searchable, sortable, collapsible module table;
- the op-type breakdown and the unsupported ops (static HTML with SVG bars);
- the sizing section (memory, a training step's memory, the assumptions;
  :mod:`.sizing_html`);
- any other top-level section of the dict as a table.

Every string that comes from the model (module paths, class names, op names, the model
name) is escaped: HTML text through :func:`html.escape`, the embedded data as JSON with
``<``, ``>``, ``&`` and the line separators written as ``\\uXXXX`` (so no ``</script>`` can
end the data block), and the JavaScript only ever sets ``textContent``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from importlib import resources

from .escape import json_controls, visible
from .tables import Table, header_items
from .units import human

# keys of a module node in report.to_dict() that the tree already shows
_NODE_KEYS = {"path", "type", "calls", "params_own", "params_total", "own", "total", "flops_total", "outputs",
              "children"}
# top-level keys of report.to_dict() shown by the header and the fixed sections
_TOP_KEYS = {"schema", "model", "convention", "causal", "mode", "device", "inference", "torch_version", "inputs",
             "totals", "params", "buffers", "unsupported", "modules", "ops", "op_types",
             "kernels"}      # the kernels record: its header lines say it (render/kernels.py)


# top-level keys the sizing section shows (render/sizing_html.py)
_SIZING_KEYS = {"memory", "training", "assumptions", "totals_by_phase", "unsupported_by_phase"}


def _asset(name: str) -> str:
    return resources.files("flopmeter.render").joinpath("assets", name).read_text(encoding="utf-8")


def json_for_script(data) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' left."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return json_controls(text)


def _numeric_leaves(value, prefix: str, out: dict) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _numeric_leaves(v, f"{prefix}.{k}", out)


def flatten_modules(root: dict, per_path: dict[str, dict] | None = None) -> tuple[list[str], list[list]]:
    """The module tree of a report dict as rows [path, type, parent, calls, metrics…].

    Fixed metrics: MACs, FLOPs, params, bytes (read + written); then every other numeric
    figure found on the nodes (``memory.peak``, ``time_ms``, …) or given in ``per_path``
    (path → name → value, e.g. the memory section's per-module peaks), in order of appearance."""
    per_path = per_path or {}
    nodes: list[tuple[dict, int]] = []
    stack = [(root, -1)]
    while stack:
        node, parent = stack.pop()
        nodes.append((node, parent))
        index = len(nodes) - 1
        stack.extend((c, index) for c in reversed(node.get("children", [])))
    extras: dict[str, None] = {}
    found = []
    for node, _ in nodes:
        leaves: dict = {}
        for key, value in node.items():
            if key not in _NODE_KEYS:
                _numeric_leaves(value, key, leaves)
        leaves.update(per_path.get(node["path"], {}))
        found.append(leaves)
        extras.update(dict.fromkeys(leaves))
    metrics = ["MACs", "FLOPs", "params", "bytes", *extras]
    rows = []
    for (node, parent), leaves in zip(nodes, found):
        total = node.get("total", {})
        rows.append([node["path"], node["type"], parent, node.get("calls", 1), total.get("macs", 0),
                     node.get("flops_total", 0), node.get("params_total", 0),
                     total.get("bytes_read", 0) + total.get("bytes_written", 0),
                     *(leaves.get(k, 0) for k in extras)])
    return metrics, rows


def _e(value) -> str:
    return html.escape(visible(value), quote=True)


def bars_svg(labels: list[str], values: list[float], *, width: int = 640, fmt=human) -> str:
    """A horizontal bar chart as inline SVG (labels escaped)."""
    bar_h, label_w, gap = 18, 220, 4
    top = max(values, default=0) or 1
    height = len(values) * (bar_h + gap) + gap
    parts = [f'<svg class="bars" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, (label, value) in enumerate(zip(labels, values)):
        y = gap + i * (bar_h + gap)
        w = max(1.0, (width - label_w - 80) * value / top) if value else 0
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(label[:40])}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}"><title>{_e(label)}: '
                     f'{value:,}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{_e(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_table(columns: list[str], rows: list[list], numeric: list[bool] | None = None, raw: bool = True,
               cls: str = "plain") -> str:
    numeric = numeric or [isinstance(c, (int, float)) and not isinstance(c, bool) for c in (rows[0] if rows else [])]
    head = "".join(f'<th class="{"num" if n else ""}">{_e(c)}</th>' for c, n in zip(columns, numeric))
    body = []
    for row in rows:
        cells = []
        for value, n in zip(row, numeric):
            text = (f"{value:,}" if raw else human(value)) if isinstance(value, int) and not isinstance(value, bool) \
                else str(value)
            indent = len(text) - len(text.lstrip(" "))       # tree tables indent names with spaces
            style = f' style="padding-left:{0.5 + indent * 0.5:g}em"' if indent and not n else ""
            cells.append(f'<td class="{"num" if n else ""}"{style}>{_e(text.lstrip(" ") if style else text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def page(title: str, body: str, data: dict | None = None) -> str:
    """The whole document: styles and (when there is data) the script inline."""
    script = ""
    if data is not None:
        script = (f'<script type="application/json" id="flopmeter-data">{json_for_script(data)}</script>\n'
                  f"<script>{_asset('report.js')}</script>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{_e(title)}</title><style>{_asset('report.css')}</style></head>\n"
            f"<body>\n{body}\n{script}\n</body></html>\n")


def _generic_section(key: str, value) -> str:
    """A section of the report dict this renderer has no special view for, as tables."""
    anchor = re.sub(r"[^A-Za-z0-9_.-]", "-", key)
    out = [f'<section class="extra" id="section-{anchor}"><h2>{_e(key)}</h2>']
    if isinstance(value, dict):
        scalars = [[k, v] for k, v in value.items() if not isinstance(v, (dict, list))]
        if scalars:
            out.append(html_table(["figure", "value"], scalars, [False, False]))
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                out.append(_generic_section(f"{key}.{k}", v))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = list(dict.fromkeys(k for v in value[:200] for k in v))
        rows = [[("" if v.get(c) is None else v.get(c)) if not isinstance(v.get(c), (dict, list))
                 else json.dumps(v.get(c)) for c in cols] for v in value[:500]]
        out.append(html_table(cols, rows, [False] * len(cols)))
        if len(value) > 500:
            out.append(f"<p>… {len(value) - 500:,} more rows in the JSON report.</p>")
    else:
        out.append(f"<pre>{_e(json.dumps(value, indent=1)[:20000])}</pre>")
    out.append("</section>")
    return "".join(out)


def report_html(report, *, view: str = "tree", depth: int | None = 2, raw: bool = False) -> str:
    d = report.to_dict(ops=False)
    by_op = sorted(report.by_op().items(), key=lambda kv: (-kv[1][1].flops(report.convention), kv[0]))
    d["op_types"] = [{"op": op, "calls": calls, "macs": cost.macs, "flops": cost.flops(report.convention),
                      "bytes": cost.bytes_read + cost.bytes_written} for op, (calls, cost) in by_op]
    return report_dict_html(d, header=header_items(report, raw), depth=depth, raw=raw)


def _memory_modules(memory) -> dict[str, dict]:
    """path → {memory peak, activation peak} from a memory section's timeline, when there is one."""
    timeline = memory.get("timeline") if isinstance(memory, dict) else None
    mods = timeline.get("modules") if isinstance(timeline, dict) else None
    out = {}
    for m in mods if isinstance(mods, list) else []:
        if isinstance(m, dict) and isinstance(m.get("path"), str):
            out[m["path"]] = {"memory peak": m.get("peak", 0), "activation peak": m.get("peak_activations", 0)}
    return out


def report_dict_html(d: dict, *, header: list[tuple[str, str]], depth: int | None = 2, raw: bool = False) -> str:
    metrics, rows = flatten_modules(d["modules"], _memory_modules(d.get("memory")))
    conv = d["convention"]["name"]
    parts = [f'<header><h1 id="title">{_e(d["model"])}</h1>{facts_table(header)}</header>',
             '<section id="treemap-section"><h2>Where the cost goes</h2>'
             '<div class="controls"><label>size by <select id="metric"></select></label> '
             '<span id="treemap-crumbs"></span></div>'
             '<h3 id="treemap-title"></h3><div id="treemap" role="img"></div></section>',
             '<section id="modules-section"><h2>Modules</h2><div class="controls">'
             '<input id="search" type="search" placeholder="search modules (path or type)" size="40"> '
             '<button id="expand">expand all</button> <button id="collapse">collapse</button> '
             '<span id="search-count"></span></div><table id="modules" class="tree"></table></section>']
    ops = [o for o in d["op_types"] if o["macs"] or o["flops"] or o["bytes"]]
    if ops:
        top = sorted(ops, key=lambda o: -o["flops"])[:15]
        parts.append('<section id="ops-section"><h2>Op types</h2>'
                     f'<p>FLOPs ({_e(conv)}) of the {len(top)} costliest op types:</p>'
                     + bars_svg([o["op"] for o in top], [o["flops"] for o in top])
                     + html_table(["op", "calls", "MACs", f"FLOPs ({conv})", "bytes"],
                                  [[o["op"], o["calls"], o["macs"], o["flops"], o["bytes"]] for o in d["op_types"]],
                                  [False, True, True, True, True], raw)
                     + "</section>")
    unsupported = d.get("unsupported") or {}
    parts.append('<section id="unsupported-section"><h2>Unsupported ops</h2>'
                 + (html_table(["op", "calls"], sorted(unsupported.items()), [False, True], True, cls="plain warn")
                    if unsupported else "<p>none: every executed op was costed or known to be free.</p>")
                 + "</section>")
    from .sizing_html import sizing_section
    sizing = sizing_section(d)
    if sizing:
        parts.append(sizing)
    for key, value in d.items():
        if key not in _TOP_KEYS and key not in _SIZING_KEYS:
            parts.append(_generic_section(key, value))
    data = {"metrics": metrics, "rows": rows, "convention": conv, "depth": 2 if depth is None else depth,
            "root": d["model"].rsplit(":", 1)[-1]}
    return page(f"flopmeter: {d['model']}", "\n".join(parts), data)


def facts_table(items: list[tuple[str, str]]) -> str:
    """(name, value) pairs as the two-column facts table of a page header (both escaped)."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="facts">{rows}</table>'


@dataclass(frozen=True)
class Image:
    """A picture for :func:`document_html` (a matplotlib SVG or PNG), inlined as a data: URI."""

    mime: str
    data: bytes
    alt: str


def document_html(facts: list[tuple[str, str]], blocks: list[tuple[str, object]], raw: bool = False,
                  title: str = "flopmeter") -> str:
    """One document of several parts (bench with its per-layer tables, a roofline with its plot):
    the facts in the header, then per block a heading and a :class:`Table`, an :class:`Image` or
    a paragraph of text."""
    parts = [f'<header><h1>{_e(title)}</h1>{facts_table(facts)}</header>']
    for heading, block in blocks:
        parts.append("<section>" + (f"<h2>{_e(heading)}</h2>" if heading else ""))
        if isinstance(block, Table):
            parts.append(html_table(block.columns, block.rows, block.numeric, raw or block.exact))
            if block.footer:
                parts.append(facts_table(block.footer))
        elif isinstance(block, Image):
            data = base64.b64encode(block.data).decode("ascii")
            parts.append(f'<img alt="{_e(block.alt)}" src="data:{_e(block.mime)};base64,{data}" style="max-width:100%">')
        else:
            parts.append(f"<p>{_e(block)}</p>")
        parts.append("</section>")
    return page(title, "\n".join(parts))


def table_html(table: Table, raw: bool = False) -> str:
    """A table that is not a single report (compare, diff, scaling): the table, then a bar
    chart per numeric column across the rows (or log-log curves when the table has them)."""
    raw = raw or table.exact
    labels = [str(r[0]) for r in table.rows]
    parts = [f'<header><h1>flopmeter</h1>{facts_table(table.footer)}</header>', "<section>",
             html_table(table.columns, table.rows, table.numeric, raw), "</section>"]
    if table.curves:
        from .plot import loglog_svg
        parts.append('<section id="curves"><h2>Growth with size (log-log)</h2>' + loglog_svg(table.curves) + "</section>")
    else:
        for col, (name, numeric) in enumerate(zip(table.columns, table.numeric)):
            values = [r[col] for r in table.rows]
            if numeric and len(values) > 1 and all(isinstance(v, (int, float)) for v in values):
                parts.append(f'<section class="figure"><h2>{_e(name)}</h2>{bars_svg(labels, values)}</section>')
    return page("flopmeter", "\n".join(parts))


__all__ = ["Image", "bars_svg", "document_html", "json_for_script", "page", "report_html", "table_html"]

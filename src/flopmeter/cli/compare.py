"""``flopmeter compare A B …`` (side by side) and ``flopmeter diff OLD.json NEW.json``
(a regression check: exit status 1 when a figure grows past ``--threshold`` percent)."""

from __future__ import annotations

import argparse
import json

from ..cost import get_convention
from ..errors import InputError
from ..render.tables import Table
from ..render.units import ParamCount
from ..report.model import tensor_dict
from ..report.schema import READABLE
from .argtypes import non_negative_float
from .common import add_input_options, add_output_options, count_spec, output_format, write_output
from .perunit import add_per_unit_options, per_unit
from .reportcheck import CHECKED_CONVENTIONS, check_op_rows, check_report, check_threshold


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter compare", description="Several models side by side.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    add_input_options(p)
    add_output_options(p)
    add_per_unit_options(p)
    return p


def diff_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter diff",
                                description="Compare two JSON reports; exit 1 when a figure grew past the threshold.")
    p.add_argument("old", help="the reference: a JSON report (flopmeter SPEC -o old.json) or a saved trace (.fmtrace)")
    p.add_argument("new", help="the report or trace to check")
    p.add_argument("--by", choices=("module", "op"), default="module",
                   help="changes listed per module (default) or per op type (needs traces or reports written "
                        "with --view ops)")
    p.add_argument("--threshold", type=non_negative_float, default=0.0,
                   help="allowed growth in percent before the exit status is 1 (default 0)")
    add_output_options(p)
    return p


def _emit(table: Table, fmt: str, raw: bool, output: str | None, as_json) -> None:
    from ..render import get_renderer
    text = json.dumps(as_json, indent=2, allow_nan=False) if fmt == "json" else get_renderer(fmt).table(table, raw)
    write_output(text, output)


def run_compare(args) -> int:
    fmt = output_format(args.format, args.output)
    conv = get_convention(args.convention).name
    table = Table(["model", "inputs", "params", "MACs", f"FLOPs ({conv})", "unsupported"],
                  [False, False, True, True, True, True])
    summaries = []
    for spec in args.specs:
        r = per_unit(count_spec(spec, args), args)
        unsupported = sum(r.unsupported.values())
        table.rows.append([r.model, ", ".join(map(repr, r.inputs)), ParamCount(r.params.count), r.macs, r.flops,
                           unsupported])
        summaries.append({"model": r.model, "inputs": [tensor_dict(t) for t in r.inputs], "params": r.params.count,
                          "macs": r.macs, "flops": r.flops, "convention": conv, "unsupported": dict(r.unsupported)})
    _emit(table, fmt, args.raw, args.output, summaries)
    return 0


_REPORT_HINT = "diff compares JSON reports written by flopmeter: flopmeter SPEC -o report.json"


def _load(path: str) -> dict:
    from ..trace.io import SUFFIX
    if path.endswith(SUFFIX):
        from ..api import report_from_trace
        from ..trace.io import load_trace
        return report_from_trace(load_trace(path)).to_dict(ops=True)
    from ..files import read_json
    data = read_json(path, "a report", _REPORT_HINT,
                     read_hint="give diff the path of a JSON report (flopmeter SPEC -o report.json)")
    if not isinstance(data, dict) or data.get("schema") not in READABLE:
        found = data.get("schema") if isinstance(data, dict) else None
        raise InputError(f"{path} is not a flopmeter report ({' or '.join(READABLE)})"
                         + (f": its schema is '{found}'" if isinstance(found, str) else ""),
                         hint="write one with: flopmeter SPEC -o report.json")
    check_report(data, path)
    if "ops" in data:
        check_op_rows(data, path)
    return data


def _figures(d: dict) -> dict[str, int]:
    t = d["totals"]
    figures = {"params": d["params"]["count"], "MACs": t["macs"]}
    figures.update({f"FLOPs ({k})": t["flops_by_convention"][k] for k in CHECKED_CONVENTIONS})
    figures.update({"bytes read": t["bytes_read"], "bytes written": t["bytes_written"],
                    "unsupported calls": sum(d["unsupported"].values())})
    return figures


def _modules(root: dict, out: dict) -> dict:
    stack = [root]
    while stack:
        node = stack.pop()
        out[node["path"]] = node["total"]["macs"]
        stack.extend(node["children"])
    return out


def _ops(d: dict, path: str) -> dict:
    """op → MACs summed over its calls (from a report's op rows)."""
    if "ops" not in d:
        raise InputError(f"{path} has no op rows to compare per op",
                         hint="write it with --view ops (or --save-trace), or diff --by module")
    out: dict[str, int] = {}
    for row in d["ops"]:
        out[row["op"]] = out.get(row["op"], 0) + row["cost"]["macs"]
    return out


def _change(old: int, new: int) -> float | None:
    """Growth in percent; None for a figure that grew from 0 (no percentage exists)."""
    if old == new:
        return 0.0
    return None if old == 0 else 100.0 * (new - old) / old


def _grew_past(pct: float | None, threshold: float) -> bool:
    return pct is None or pct > threshold


def _shown(pct: float | None) -> str:
    return "new" if pct is None else f"{pct:+.2f}%"


def run_diff(args) -> int:
    check_threshold(args.threshold)
    fmt = output_format(args.format, args.output)
    old, new = _load(args.old), _load(args.new)
    table = Table(["figure", "old", "new", "change"], [False, True, True, False])
    grown = []
    rows = []
    for name, before in _figures(old).items():
        after = _figures(new)[name]
        pct = _change(before, after)
        if _grew_past(pct, args.threshold):
            grown.append(name)
        table.rows.append([name, before, after, _shown(pct)])
        rows.append({"figure": name, "old": before, "new": after, "change_percent": pct})
    if args.by == "op":
        old_parts, new_parts = _ops(old, args.old), _ops(new, args.new)
    else:
        old_parts, new_parts = _modules(old["modules"], {}), _modules(new["modules"], {})
    for part in sorted(set(old_parts) | set(new_parts)):
        before, after = old_parts.get(part, 0), new_parts.get(part, 0)
        if before != after and part:
            pct = _change(before, after)
            table.rows.append([f"  MACs of {part}", before, after, _shown(pct)])
            rows.append({"figure": f"MACs of {part}", "old": before, "new": after, "change_percent": pct})
    _emit(table, fmt, args.raw, args.output, {"threshold_percent": args.threshold, "grown": grown, "rows": rows})
    if grown:
        import sys
        print(f"error: grew past {args.threshold:g}%: {', '.join(grown)}", file=sys.stderr)
        return 1
    return 0

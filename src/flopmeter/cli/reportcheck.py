"""What ``flopmeter diff`` needs from a JSON report, checked before it compares: every figure
present and a count (a finite number from 0 to ``MAX_FIGURE``), the module tree and the op rows
well formed; and a finite threshold."""

from __future__ import annotations

import math

from ..errors import InputError

CHECKED_CONVENTIONS = ("dot", "all", "exact", "mac")
FIGURES = (("params", "count"), ("totals", "macs"), ("totals", "bytes_read"), ("totals", "bytes_written"),
           *(("totals", "flops_by_convention", c) for c in CHECKED_CONVENTIONS))
_HINT = "write the report again with: flopmeter SPEC -o report.json"
MAX_FIGURE = 10**30      # far above any model's count; a larger figure is not from a count


def _number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= MAX_FIGURE)


def _get(data: dict, keys: tuple, path: str):
    value = data
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise InputError(f"{path} has no '{'.'.join(keys[:i + 1])}'", hint=_HINT)
        value = value[key]
    return value


def check_report(data: dict, path: str) -> None:
    for keys in FIGURES:
        value = _get(data, keys, path)
        if not _number(value):
            raise InputError(f"{path}: '{'.'.join(keys)}' is {_shown(value)}, not a number from 0 to 10^30",
                             hint=_HINT)
    unsupported = _get(data, ("unsupported",), path)
    if not isinstance(unsupported, dict) or not all(_number(v) for v in unsupported.values()):
        raise InputError(f"{path}: 'unsupported' must map op names to call counts", hint=_HINT)
    stack = [("modules", _get(data, ("modules",), path))]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("path"), str) \
                or not isinstance(node.get("children"), list):
            raise InputError(f"{path}: '{where}' is not a module entry (path, total, children)", hint=_HINT)
        macs = _get(node, ("total", "macs"), f"{path} ({where})")
        if not _number(macs):
            raise InputError(f"{path}: MACs of module '{node['path']}' are {_shown(macs)}, not a number from 0 to "
                             "10^30", hint=_HINT)
        stack.extend((f"{where}.children[{i}]", c) for i, c in enumerate(node["children"]))


def check_op_rows(data: dict, path: str) -> None:
    """The op rows ``diff --by op`` sums: each an object with an op name and a MAC count."""
    rows = data["ops"]
    if not isinstance(rows, list):
        raise InputError(f"{path}: 'ops' is not a list of op rows", hint=_HINT)
    for i, row in enumerate(rows):
        cost = row.get("cost") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("op"), str) or not isinstance(cost, dict) \
                or not _number(cost.get("macs")):
            raise InputError(f"{path}: 'ops[{i}]' is not an op row (op, cost.macs)", hint=_HINT)


def _shown(value) -> str:
    """A value for an error line, cut short (a report may hold anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_threshold(value: float) -> None:
    if not math.isfinite(value):
        raise InputError(f"--threshold must be a finite percentage, got {value}",
                         hint="e.g. --threshold 1 allows 1 % growth; 0 (the default) allows none")

"""What ``flopmeter diff`` needs from a JSON report, checked before it compares: every figure
present and a number, the module tree well formed; and a finite threshold."""

from __future__ import annotations

import math

from ..errors import InputError

FIGURES = (("params", "count"), ("totals", "macs"), ("totals", "bytes_read"), ("totals", "bytes_written"),
           *(("totals", "flops_by_convention", c) for c in ("dot", "all", "exact", "mac")))
_HINT = "write the report again with: flopmeter SPEC -o report.json"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
            raise InputError(f"{path}: '{'.'.join(keys)}' is {value!r}, not a number", hint=_HINT)
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
            raise InputError(f"{path}: MACs of module '{node['path']}' are {macs!r}, not a number", hint=_HINT)
        stack.extend((f"{where}.children[{i}]", c) for i, c in enumerate(node["children"]))


def check_threshold(value: float) -> None:
    if not math.isfinite(value):
        raise InputError(f"--threshold must be a finite percentage, got {value}",
                         hint="e.g. --threshold 1 allows 1 % growth; 0 (the default) allows none")

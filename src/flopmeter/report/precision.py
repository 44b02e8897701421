"""MACs by the precision they run in.

The :class:`~flopmeter.cost.Cost` record has no precision field (Costs of different
precisions still add up); each op row keeps its event, whose formula names the precision
of its MACs (``Registry.precision``: the dtype of its first output, or what a low-precision
formula registers — ``int8`` for ``_int_mm``, ``float8_e4m3fn`` for ``_scaled_mm``,
``bfloat16×int4`` for a weight-only int4 matmul, ``uint8×int8`` for a quantized Linear).
"""

from __future__ import annotations

from collections import defaultdict

from ..formulas import REGISTRY, Registry

# precisions a float model runs in; MACs in any other are "low precision"
FLOAT = frozenset({"float64", "float32", "float16", "bfloat16", "complex64", "complex128"})


def macs_by_precision(report, registry: Registry | None = None) -> dict[str, int]:
    """precision → MACs over the report's op rows, largest first."""
    registry = registry or REGISTRY
    out: dict[str, int] = defaultdict(int)
    for row in report.ops:
        if row.cost.macs:
            out[registry.precision(row.event) or "unknown"] += row.cost.macs
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def low_precision(by_precision: dict[str, int]) -> dict[str, int]:
    """The part of :func:`macs_by_precision` in integer, fp8 or mixed (``a×b``) precision."""
    return {k: v for k, v in by_precision.items() if k not in FLOAT}

"""A report per sample or per token: every Cost divided by the batch size (or by the number of
input tokens), for tables filled "per image" or "per token". Parameters and buffers are per
model and stay as they are. A count that does not divide evenly becomes a float (an
average); the model label says what was divided by what, in every output format."""

from __future__ import annotations

from dataclasses import fields, replace

from ..cost import Cost
from ..errors import InputError
from .model import ModuleNode, OpRow, Report


def _div(value: int, divisor: int):
    return value // divisor if value % divisor == 0 else round(value / divisor, 3)


def _cost(cost: Cost, divisor: int) -> Cost:
    return Cost(*(_div(getattr(cost, f.name), divisor) for f in fields(Cost)))


def _node(node: ModuleNode, divisor: int) -> ModuleNode:
    return replace(node, own=_cost(node.own, divisor), total=_cost(node.total, divisor),
                   children=[_node(c, divisor) for c in node.children],
                   by_phase={p: _cost(c, divisor) for p, c in node.by_phase.items()})


def divided(report: Report, divisor: int, label: str) -> Report:
    """``report`` with every cost divided by ``divisor``; ``label`` is added to the model name."""
    if divisor <= 0:
        raise InputError(f"cannot divide a report by {divisor}",
                         hint="the divisor is a count of samples or tokens, at least 1")
    ops = [OpRow(r.event, r.status, _cost(r.cost, divisor)) for r in report.ops]
    return replace(report, root=_node(report.root, divisor), ops=ops, model=f"{report.model} {label}")


def per_sample(report: Report) -> Report:
    """Divided by the batch size: the first dimension of the first input."""
    if not report.inputs or not report.inputs[0].shape:
        raise InputError("--per-sample needs an input with a batch dimension",
                         hint="give an input whose first dimension is the batch, e.g. --input 8x3x224x224")
    batch = report.inputs[0].shape[0]
    return divided(report, batch, f"per sample (totals ÷ batch {batch})")


def per_token(report: Report) -> Report:
    """Divided by the number of input tokens: batch × sequence length of integer token ids."""
    first = report.inputs[0] if report.inputs else None
    if first is None or first.dtype.is_floating_point or first.dtype.is_complex or len(first.shape) != 2:
        raise InputError("--per-token needs token-id inputs (integer, batch × sequence), as hf: text models take",
                         hint="use --per-sample for other models")
    batch, seq = first.shape
    return divided(report, batch * seq, f"per token (totals ÷ {batch}×{seq} tokens)")

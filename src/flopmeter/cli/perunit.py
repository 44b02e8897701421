"""``--per-sample`` / ``--per-token`` for the commands that count (``flopmeter SPEC``, ``compare``)."""

from __future__ import annotations


def add_per_unit_options(p) -> None:
    per = p.add_mutually_exclusive_group()
    per.add_argument("--per-sample", action="store_true",
                     help="divide every cost by the batch size (parameters stay per model)")
    per.add_argument("--per-token", action="store_true",
                     help="divide every cost by the number of input tokens (batch × sequence; hf: text models)")


def per_unit(report, args):
    """The report divided as asked (unchanged without either option)."""
    if not (args.per_sample or args.per_token):
        return report
    from ..report.per_unit import per_sample, per_token
    return per_sample(report) if args.per_sample else per_token(report)

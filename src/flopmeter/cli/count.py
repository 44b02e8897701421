"""``flopmeter SPEC``: count one model and show it."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from ..render.tables import VIEWS
from .common import FORMS, add_input_options, add_output_options, count_spec, output_format, write_output
from .perunit import add_per_unit_options, per_unit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flopmeter", description="Exact parameters, MACs and FLOPs of a PyTorch model.",
        epilog="other commands: 'flopmeter compare SPEC SPEC …', 'flopmeter diff OLD.json NEW.json', "
               "'flopmeter explain SPEC PATH'")
    p.add_argument("spec", help=f"the model: {FORMS}")
    add_input_options(p)
    out = p.add_argument_group("output")
    out.add_argument("--view", choices=VIEWS, default="tree",
                     help="tree: module tree (default); keras: layer/output shape/params; ops: one row per op")
    out.add_argument("--ops", action="store_const", const="ops", dest="view", help="same as --view ops")
    out.add_argument("--depth", type=int, default=2, help="module tree depth (default 2; -1 for all)")
    add_per_unit_options(out)
    add_output_options(out)
    p.add_argument("--version", action="version", version=f"flopmeter {__version__}")
    return p


def run(args) -> int:
    if args.depth < -1:
        raise InputError(f"--depth must be 0 or more (or -1 for the whole tree), got {args.depth}",
                         hint="e.g. --depth 2, or --depth -1 for every module")
    fmt = output_format(args.format, args.output)
    report = per_unit(count_spec(args.spec, args), args)
    depth = None if args.depth < 0 else args.depth
    if fmt == "table" and args.output is None and sys.stdout.isatty():
        from rich.console import Console

        from ..render.terminal import render
        Console().print(render(report, view=args.view, depth=depth, raw=args.raw))
        return 0
    from ..render import get_renderer
    write_output(get_renderer(fmt).report(report, view=args.view, depth=depth, raw=args.raw), args.output)
    return 0

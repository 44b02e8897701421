"""``flopmeter SPEC``: count one model and show it."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from ..render.tables import VIEWS
from .argtypes import prompt_plus_new, tree_depth
from .common import (FORMS, add_input_options, add_output_options, add_training_options, count_spec, output_format,
                     write_output)
from .memory import add_memory_options, count_with_memory, memory_asked
from .perunit import add_per_unit_options, per_unit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flopmeter count", description="Exact parameters, MACs and FLOPs of a PyTorch model "
                                            "('flopmeter SPEC' is short for 'flopmeter count SPEC').",
        epilog="'flopmeter --help' lists the other commands")
    p.add_argument("spec", help=f"the model: {FORMS}")
    add_input_options(p)
    add_memory_options(p)
    add_training_options(p)
    p.add_argument("--generate", type=prompt_plus_new, metavar="PROMPT+NEW",
                   help="hf: decoders: count the prefill of PROMPT tokens and the decode of NEW tokens with the KV cache")
    out = p.add_argument_group("output")
    out.add_argument("--view", choices=VIEWS, default="tree",
                     help="tree: module tree (default); keras: layer/output shape/params; ops: one row per op; "
                          "memory: live-bytes timeline and per-module peaks")
    out.add_argument("--ops", action="store_const", const="ops", dest="view", help="same as --view ops")
    out.add_argument("--depth", type=tree_depth, help="depth of the tree view in table, md and csv (default 2; -1 for all)")
    out.add_argument("--save-trace", metavar="FILE.fmtrace",
                     help="also save the recorded trace (re-cost or re-render it later with 'flopmeter FILE.fmtrace')")
    add_per_unit_options(out)
    add_output_options(out)
    p.add_argument("--version", action="version", version=f"flopmeter {__version__}")
    return p


def check_output_options(args, fmt: str) -> None:
    """--depth and --view where they would be ignored are refused (before any counting)."""
    if args.depth is not None and (args.view not in ("tree", "memory") or fmt == "json"):
        where = "JSON always holds the whole tree" if fmt == "json" else f"the {args.view} view has no depth"
        raise InputError(f"--depth applies to the tree and memory views in table, md and csv; {where}",
                         hint="leave --depth out")
    if fmt == "json" and args.view == "keras":
        raise InputError("--view keras has no JSON form; JSON holds the whole module tree",
                         hint="use --view keras with --format table, md or csv, or --ops to add every op to JSON")
    if fmt == "html" and args.view != "tree":
        raise InputError(f"--view {args.view} has no HTML form; the HTML report shows the tree and the op types",
                         hint=f"use --view {args.view} with --format table, md or csv")


def run(args) -> int:
    if args.depth is not None and args.depth < -1:
        raise InputError(f"--depth must be 0 or more (or -1 for the whole tree), got {args.depth}",
                         hint="e.g. --depth 2, or --depth -1 for every module")
    fmt = output_format(args.format, args.output)
    check_output_options(args, fmt)
    if args.generate:
        return _generate(args, fmt)
    report = count_with_memory(args) if memory_asked(args) else count_spec(args.spec, args)
    if args.save_trace:
        from ..trace.io import SUFFIX, save_trace
        if not args.save_trace.endswith(SUFFIX):
            raise InputError(f"a trace file ends in {SUFFIX}: '{args.save_trace}'",
                             hint=f"for example --save-trace run{SUFFIX}")
        save_trace(report.trace, args.save_trace)
    report = per_unit(report, args)
    depth = 2 if args.depth is None else None if args.depth < 0 else args.depth
    if fmt == "table" and args.output is None and sys.stdout.isatty():
        from rich.console import Console

        from ..render.terminal import render
        Console().print(render(report, view=args.view, depth=depth, raw=args.raw))
        return 0
    from ..render import get_renderer
    write_output(get_renderer(fmt).report(report, view=args.view, depth=depth, raw=args.raw), args.output)
    return 0


def _generate(args, fmt: str) -> int:
    import json

    from ..api import Options
    from ..frontends import resolve
    from ..generate import generation
    from ..render import get_renderer
    from .common import input_request, note, progress

    prompt, new = args.generate
    if args.train:
        raise InputError("--generate counts inference; it does not combine with --train",
                         hint="drop --train, or drop --generate to count a training step")
    with progress(f"building {args.spec} …"):
        resolved = resolve(args.spec, input_request(args), trust_pickle=args.trust_pickle)
    for line in resolved.notes:
        note(line)
    with progress(f"counting prefill and decode of {resolved.name} …"):
        gen = generation(resolved.model, prompt, new, batch=args.batch or 1, name=resolved.name,
                         options=Options(convention=args.convention, strict=args.strict, causal=args.causal))
    text = json.dumps(gen.to_dict(), indent=2) if fmt == "json" else get_renderer(fmt).table(gen.table(), raw=args.raw)
    write_output(text, args.output)
    return 0

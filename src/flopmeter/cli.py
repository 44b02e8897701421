"""The ``flopmeter`` command: ``flopmeter torchvision:resnet50 [options]``.

A thin ``main(argv) -> int``: parse, resolve, count, render. Every FlopmeterError becomes
``error: …`` and ``hint: …`` on stderr with exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .api import Options, count
from .cost import CONVENTIONS
from .errors import FlopmeterError, InputError


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise InputError(f"cannot read input shape '{text}'", hint="write it as 1x3x224x224") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"input shape '{text}' must have positive sizes", hint="write it as 1x3x224x224")
    return shape


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter", description="Exact parameters, MACs and FLOPs of a PyTorch model.")
    p.add_argument("spec", help="the model: torchvision:NAME or timm:NAME")
    p.add_argument("--input", action="append", metavar="SHAPE", help="input shape such as 1x3x224x224 (repeat for several inputs)")
    p.add_argument("--batch", type=int, help="batch size (replaces the first dimension of every input)")
    p.add_argument("--convention", default="dot", help=f"FLOP convention: {', '.join(CONVENTIONS)} (default: dot)")
    p.add_argument("--causal", choices=("full", "exact"), default="full",
                   help="count attention under a causal mask in full (default) or only its unmasked pairs")
    p.add_argument("--depth", type=int, default=2, help="module tree depth to show (default: 2)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--raw", action="store_true", help="exact integers instead of K/M/G/T")
    p.add_argument("--mode", choices=("fake", "real"), default="fake", help="fake tensors (default) or real ones")
    p.add_argument("--strict", action="store_true", help="fail when an op has no cost formula")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    p.add_argument("--version", action="version", version=f"flopmeter {__version__}")
    return p


def run(args: argparse.Namespace) -> int:
    from .frontends import resolve

    # validate the options before resolving the model
    options = Options(convention=args.convention, mode=args.mode, strict=args.strict, causal=args.causal)
    resolved = resolve(args.spec)
    shapes = [parse_shape(s) for s in args.input] if args.input else [resolved.input_shape]
    if args.batch is not None:
        if args.batch <= 0:
            raise InputError(f"--batch must be positive, got {args.batch}")
        shapes = [(args.batch, *s[1:]) for s in shapes]
    report = count(resolved.model, input_shape=shapes, options=options)
    report.model = resolved.name
    if args.format == "json":
        print(report.to_json(ops=False))
        return 0
    from rich.console import Console

    from .render.terminal import header, module_table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    console.print(header(report, raw=args.raw))
    console.print()
    console.print(module_table(report, depth=args.depth, raw=args.raw))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except FlopmeterError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

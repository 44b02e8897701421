"""The ``flopmeter`` command line.

    flopmeter SPEC [options]              count one model (tree, keras or ops view)
    flopmeter compare SPEC SPEC [...]     several models side by side
    flopmeter diff OLD.json NEW.json      regression check between two JSON reports
    flopmeter explain SPEC PATH           one module's closed form next to its traced ops
    flopmeter scaling SPEC --seq-len A:B  how cost grows with the input (or --input-size A:B)
    flopmeter bench SPEC [...]            measured throughput and latency (and per layer)
    flopmeter sweep PATTERN ... -o F      many models × sizes × batches, row by row, resumable
    flopmeter roofline SPEC --device-spec NAME   predicted latency per module on a device
    flopmeter calibrate [--device cpu|cuda]      measure this machine as the device spec 'local'

``main(argv) -> int`` is thin: parse, run, and turn every FlopmeterError into one
``error: …`` line and one ``hint: …`` line with exit status 2 (``--debug`` re-raises).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import FlopmeterError, InputError, close_matches
from . import bench, calibrate, compare, count, explain, roofline, scaling, sweep
from .quiet import quiet_torch


# subcommand → (parser factory, runner); anything else is a SPEC for the count command
SUBCOMMANDS = {
    "compare": (compare.compare_parser, compare.run_compare),
    "diff": (compare.diff_parser, compare.run_diff),
    "explain": (explain.parser, explain.run),
    "scaling": (scaling.parser, scaling.run),
    "bench": (bench.parser, bench.run),
    "sweep": (sweep.parser, sweep.run),
    "roofline": (roofline.parser, roofline.run),
    "calibrate": (calibrate.parser, calibrate.run),
}


def _misspelled_subcommand(word: str) -> FlopmeterError | None:
    """'compar' → did you mean 'compare'? (only for a word that cannot be a SPEC: no ':', no such file)."""
    if word.startswith("-") or ":" in word or "." in word or "/" in word or Path(word).exists():
        return None
    close = close_matches(word, SUBCOMMANDS, n=1)
    if not close:
        return None
    return InputError(f"unknown command '{word}'", hint=f"did you mean 'flopmeter {close[0]}'?")


def _fail(exc: FlopmeterError) -> int:
    from ..render.escape import visible
    print(f"error: {visible(exc)}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {visible(exc.hint)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    if argv is None and "_ARGCOMPLETE" in os.environ:      # shell completion (the 'completion' extra)
        from .completion import complete
        complete()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        make_parser, runner = SUBCOMMANDS[argv[0]]
        parser, argv = make_parser(), argv[1:]
    else:
        if argv and (typo := _misspelled_subcommand(argv[0])):
            return _fail(typo)
        parser, runner = count.parser(), count.run
    parser.error = _usage_error(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:           # --help, --version, or a usage error (printed as one line)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with quiet_torch(args.debug):
            return runner(args)
    except FlopmeterError as exc:
        if args.debug:
            raise
        return _fail(exc)
    except KeyboardInterrupt as exc:     # Ctrl-C, or SIGTERM where a command handles it (exit 128 + signal)
        print("error: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)


def _usage_error(parser):
    """argparse's usage errors as one ``error:`` line and one ``hint:`` line, exit status 2."""
    def error(message: str):
        print(f"error: {message}", file=sys.stderr)
        print(f"hint: '{parser.prog} --help' lists the options", file=sys.stderr)
        raise SystemExit(2)
    return error


__all__ = ["main"]

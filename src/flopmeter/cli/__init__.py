"""The ``flopmeter`` command line.

    flopmeter SPEC [options]              count one model (tree, keras or ops view)
    flopmeter compare SPEC SPEC [...]     several models side by side
    flopmeter diff OLD.json NEW.json      regression check between two JSON reports
    flopmeter explain SPEC PATH           one module's closed form next to its traced ops
    flopmeter scaling SPEC --seq-len A:B  how cost grows with the input (or --input-size A:B)

``main(argv) -> int`` is thin: parse, run, and turn every FlopmeterError into one
``error: …`` line and one ``hint: …`` line with exit status 2 (``--debug`` re-raises).
"""

from __future__ import annotations

import sys

from ..errors import FlopmeterError
from . import compare, count, explain, scaling


# subcommand → (parser factory, runner); anything else is a SPEC for the count command
SUBCOMMANDS = {
    "compare": (compare.compare_parser, compare.run_compare),
    "diff": (compare.diff_parser, compare.run_diff),
    "explain": (explain.parser, explain.run),
    "scaling": (scaling.parser, scaling.run),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        make_parser, runner = SUBCOMMANDS[argv[0]]
        parser, argv = make_parser(), argv[1:]
    else:
        parser, runner = count.parser(), count.run
    args = parser.parse_args(argv)
    try:
        return runner(args)
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


__all__ = ["main"]

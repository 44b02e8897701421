"""The ``flopmeter`` command line.

    flopmeter [count] SPEC [options]      count one model (tree, keras, ops or memory view)
    flopmeter compare SPEC SPEC [...]     several models side by side
    flopmeter diff OLD.json NEW.json      regression check between two JSON reports
    flopmeter explain SPEC PATH           one module's closed form next to its traced ops
    flopmeter scaling SPEC --seq-len A:B  how cost grows with the input (or --input-size A:B)
    flopmeter bench SPEC [...]            measured throughput and latency (and per layer)
    flopmeter sweep PATTERN ... -o F      many models × sizes × batches, row by row, resumable
    flopmeter roofline SPEC --device-spec NAME   predicted latency per module on a device
    flopmeter calibrate [--device cpu|cuda]      measure this machine as the device spec 'local'
    flopmeter devices [NAME]              the device table with usable memory and sources
    flopmeter serve SPEC --device H100 --prompt P --output N   serving sizing as vLLM does it
    flopmeter plan SPEC --cluster 8xH100:4 --tp 8 --fsdp   a multi-GPU training step, traced on one CPU

``main(argv) -> int`` is thin: parse, run, and turn every FlopmeterError into one
``error: …`` line and one ``hint: …`` line with exit status 2 (``--debug`` re-raises).
A command's module (and with it PyTorch) is imported only when that command runs, so
``flopmeter --help`` and ``flopmeter --version`` start at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from ..errors import FlopmeterError, InputError, ModelForwardError, close_matches, did_you_mean
from .quiet import quiet_torch


# command → (module, parser factory, runner, what it does); a first word that is none of them is a SPEC to count
COMMANDS = {
    "count": ("count", "parser", "run", "count one model: its tree, keras, ops or memory view ('flopmeter SPEC' "
                                        "for short)"),
    "compare": ("compare", "compare_parser", "run_compare", "several models side by side"),
    "diff": ("compare", "diff_parser", "run_diff", "regression check between two JSON reports (or traces)"),
    "explain": ("explain", "parser", "run", "one module's closed form next to its traced ops"),
    "scaling": ("scaling", "parser", "run", "how cost grows with the input (--seq-len A:B or --input-size A:B)"),
    "bench": ("bench", "parser", "run", "measured throughput and latency (and per layer)"),
    "sweep": ("sweep", "parser", "run", "many models × sizes × batches, row by row, resumable"),
    "roofline": ("roofline", "parser", "run", "predicted latency per module on a device spec"),
    "calibrate": ("calibrate", "parser", "run", "measure this machine as the device spec 'local'"),
    "devices": ("devices", "parser", "run", "the device table: memory, usable memory, peaks, links, sources"),
    "serve": ("serve", "parser", "run", "serving sizing as vLLM does it: KV blocks, concurrency, TTFT, TPOT, "
                                        "tokens/s"),
    "plan": ("plan", "parser", "run", "a multi-GPU training step: per-rank memory, collectives, step time"),
}


def command(name: str):
    """(parser factory, runner) of a command, importing its module."""
    module, make_parser, runner, _ = COMMANDS[name]
    loaded = importlib.import_module(f".{module}", __name__)
    return getattr(loaded, make_parser), getattr(loaded, runner)


def top_parser() -> argparse.ArgumentParser:
    """``flopmeter --help``: the commands, without importing any of them."""
    p = argparse.ArgumentParser(
        prog="flopmeter", usage="flopmeter [count] SPEC [options]\n       flopmeter COMMAND [options]",
        description="Exact parameters, MACs and FLOPs of a PyTorch model.",
        epilog="'flopmeter COMMAND --help' lists a command's options; 'flopmeter count --help' those of "
               "counting one model.")
    p.add_argument("--version", action="store_true", help="show flopmeter's version and exit")
    commands = p.add_subparsers(title="commands", metavar="COMMAND")
    for name, (*_, text) in COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    return p


def _misspelled_subcommand(word: str) -> FlopmeterError | None:
    """'compar' → did you mean 'compare'? (only for a word that cannot be a SPEC: no ':', no such file)."""
    if word.startswith("-") or ":" in word or "." in word or "/" in word or Path(word).exists():
        return None
    close = close_matches(word, COMMANDS, n=1)
    if not close:
        return None
    return InputError(f"unknown command '{word}'", hint=f"did you mean 'flopmeter {close[0]}'?")


def _fail(exc: FlopmeterError, prog: str = "flopmeter") -> int:
    from ..render.escape import visible
    print(f"error: {visible(exc)}", file=sys.stderr)
    hint = exc.hint or f"'{prog} --help' lists the options; add --debug to see where it failed"
    print(f"hint: {visible(hint)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    if argv is None and "_ARGCOMPLETE" in os.environ:      # shell completion (the 'completion' extra)
        from .completion import complete
        complete()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        from .. import __version__
        print(f"flopmeter {__version__}")
        return 0
    if argv and argv[0] in ("-h", "--help"):
        top_parser().print_help()
        return 0
    if argv and argv[0] in COMMANDS:
        name, argv = argv[0], argv[1:]
    elif argv and (typo := _misspelled_subcommand(argv[0])):
        return _fail(typo)
    else:
        name = "count"
    make_parser, runner = command(name)
    parser = make_parser()
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
        return _fail(exc, parser.prog)
    except KeyboardInterrupt as exc:     # Ctrl-C, or SIGTERM where a command handles it (exit 128 + signal)
        print("error: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except BaseException as exc:
        if isinstance(exc, Exception) or args.debug:
            raise
        return _fail(_exited(exc), parser.prog)


def _exited(exc: BaseException) -> ModelForwardError:
    """A SystemExit (or another BaseException) from the model's own code, which ran during the
    command: the command does not exit with the model's status, it says what happened."""
    what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
    return ModelForwardError(f"the model's code raised {what} while it ran", module=None, op=None, shapes=None,
                             hint="a model (its forward or factory) should raise an exception, not exit; "
                                  "add --debug for the full traceback")


def _usage_error(parser):
    """argparse's usage errors as one ``error:`` line and one ``hint:`` line, exit status 2
    (for a misspelled option, the closest one)."""
    def error(message: str):
        print(f"error: {message}", file=sys.stderr)
        hint = _closest_option(parser, message) or f"'{parser.prog} --help' lists the options"
        print(f"hint: {hint}", file=sys.stderr)
        raise SystemExit(2)
    return error


def _closest_option(parser, message: str) -> str | None:
    if not message.startswith("unrecognized arguments: "):
        return None
    given = [word.split("=")[0] for word in message.split()[2:] if word.startswith("--")]
    options = [o for action in parser._actions for o in action.option_strings]   # argparse's list of options
    return next((hint for word in given if (hint := did_you_mean(word, options))), None)


__all__ = ["main"]

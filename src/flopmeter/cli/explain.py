"""``flopmeter explain SPEC PATH``: one module's closed form next to its traced ops."""

from __future__ import annotations

import argparse
import functools

from .. import __version__
from ..explain import explain
from .common import FORMS, add_input_options, count_spec, write_output


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flopmeter explain",
        description="Show a module's closed-form derivation (symbolic, substituted, value) next to the "
                    "aten ops traced inside it, and whether the two agree under every FLOP convention.")
    p.add_argument("spec", help=f"the model: {FORMS}")
    p.add_argument("path", help="the module's qualified name, e.g. layer1.0.conv1 ('' for the whole model); "
                                "'flopmeter SPEC --depth -1' lists them")
    add_input_options(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the explanation to FILE")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the closed form and the traced ops disagree (or there is no closed form)")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    p.add_argument("--version", action="version", version=f"flopmeter {__version__}")
    return p


def run(args) -> int:
    explanation = count_spec(args.spec, args, functools.partial(_explain_at, path=args.path))
    write_output(explanation.render(), args.output)
    if args.check:
        agrees = explanation.agrees
        return 0 if agrees and all(agrees.values()) and explanation.params_agree else 1
    return 0


def _explain_at(model, *inputs, kwargs, options, path):
    return explain(model, path, *inputs, kwargs=kwargs, options=options)

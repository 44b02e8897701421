"""``flopmeter scaling SPEC --seq-len 128:8192`` (or ``--input-size 64:512``): count at a
handful of sizes and fit how MACs, FLOPs and bytes grow, per module and in total."""

from __future__ import annotations

import argparse
import json

import torch

from ..errors import InputError
from ..render.tables import Table
from ..scaling import Scaling, scan, size_range
from .argtypes import tree_depth
from .common import FORMS, add_input_options, add_output_options, count_spec, input_request, output_format, \
    progress, write_output

FIGURES = ("macs", "flops", "bytes")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flopmeter scaling", conflict_handler="resolve",  # its --seq-len is a range
        description="How cost grows with the input: exact polynomials in the sequence length, the leading "
                    "exponent in the resolution.")
    p.add_argument("spec", help=f"the model: {FORMS}")
    add_input_options(p)
    sizes = p.add_mutually_exclusive_group(required=True)
    sizes.add_argument("--seq-len", dest="seq_range", metavar="START:END",
                       help="sequence lengths to count at (hf: text models), e.g. 128:8192")
    sizes.add_argument("--input-size", dest="size_range", metavar="START:END",
                       help="side of a square image input (H = W), e.g. 64:512")
    p.add_argument("--depth", type=tree_depth, default=2, help="module tree depth in the table (default 2; -1 for all)")
    add_output_options(p)
    p.set_defaults(seq_len=None)
    return p


def _counter(args):
    """size → Report, counting SPEC under the CLI's options at that size."""
    if args.seq_range:
        def at(size):
            a = argparse.Namespace(**vars(args))
            a.seq_len = size
            return count_spec(args.spec, a)
        return at
    from ..frontends import resolve
    resolved = resolve(args.spec, input_request(args), trust_pickle=args.trust_pickle)
    inputs, _ = resolved.make_inputs(torch.device("meta"))
    first = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
    if first is None or first.ndim < 3:
        raise InputError("--input-size needs a model whose first input is an image (…×H×W)",
                         hint="use --seq-len for sequence models, or give --input 1x3x224x224")
    lead = "x".join(map(str, first.shape[:-2]))
    dtype = str(first.dtype).removeprefix("torch.")

    def at(size):
        a = argparse.Namespace(**vars(args))
        a.input = [f"{lead}x{size}x{size}:{dtype}"] + list(args.input[1:] if args.input else [])
        return count_spec(args.spec, a)
    return at


def scaling_table(result: Scaling, depth: int | None) -> Table:
    var = result.variable
    t = Table(["module", "type", "O(MACs)", f"MACs({var})", f"FLOPs({var})", f"bytes({var})", "exact"],
              [False] * 7)
    t.keys = []
    for path, fits in result.modules.items():
        level = 0 if not path else path.count(".") + 1
        if depth is not None and level > depth:
            continue
        name = path.rsplit(".", 1)[-1] if path else result.model
        exact = all(fits[f].exact for f in FIGURES)
        t.keys.append(path)
        order = result.big_o(path)
        t.rows.append(["  " * level + name, result.types.get(path, ""), "0" if order == "0" else f"O({order})",
                       *(fits[f].polynomial() for f in FIGURES), "yes" if exact else "no"])
    t.curves = {f: list(zip(result.sizes, result.total[f].values)) for f in FIGURES}
    t.curves.update({k: list(zip(result.sizes, v.values)) for k, v in result.total.items() if k.startswith("memory.")})
    how = ("exact polynomials, checked at a size the fit did not use" if not result.two_d else
           "in resolution the cost is piecewise polynomial (striding rounds sizes): a polynomial where it held at "
           "the check size (on these sizes), else the leading exponent fitted on the two largest sizes (≈ c·S^e)")
    t.footer = [("model", result.model), ("size", f"{var} = {', '.join(map(str, result.sizes))}"
                                          f" (checked at {result.holdout})"), ("fits", how)]
    total = result.total
    t.footer += [(f"total {f}", f"{total[f].polynomial()}   O({result.big_o('', f)}); "
                                f"slope {total[f].exponent:.3f} on log-log" if total[f].exponent is not None else "")
                 for f in FIGURES]
    return t


def to_json(result: Scaling) -> dict:
    def one(fit):
        return {"values": list(fit.values), "exact": fit.exact, "exponent": fit.exponent,
                "coefficients": [str(c) for c in fit.coefficients] if fit.coefficients else None,
                "polynomial": fit.polynomial(), "big_o": fit.big_o(result.two_d)}
    return {"model": result.model, "variable": result.variable, "sizes": list(result.sizes),
            "holdout": result.holdout, "modules": {p: {"type": result.types.get(p, ""),
                                                       **{f: one(v) for f, v in fits.items()}}
                                                   for p, fits in result.modules.items()}}


def run(args) -> int:
    fmt = output_format(args.format, args.output)
    sizes, holdout = size_range(args.seq_range or args.size_range)
    two_d = args.size_range is not None
    count_at = _counter(args)
    with progress("counting at each size …"):
        result = scan(count_at, sizes, holdout, variable="S" if two_d else "n", two_d=two_d)
    if all(len(set(result.total[f].values)) == 1 for f in FIGURES):
        flag = "--seq-len" if args.seq_range else "--input-size"
        raise InputError(f"the cost of {result.model} did not change with {flag}",
                         hint="--seq-len sizes the token ids of hf: text models; use --input-size for images, "
                              "or --input for a model with its own inputs")
    depth = None if args.depth < 0 else args.depth
    table = scaling_table(result, depth)
    if fmt == "json":
        write_output(json.dumps(to_json(result), indent=2), args.output)
        return 0
    from ..render import get_renderer
    text = get_renderer(fmt).table(table, args.raw)
    if fmt in ("table", "md"):
        from ..render.plot import loglog_text
        plot = loglog_text(table.curves)
        facts = "\n".join(f"{k}: {v}" for k, v in table.footer)
        text = (f"{text}\n{facts}\n\n{plot}\n" if fmt == "table" else f"{text}\n\n" +
                "".join(f"**{k}**: {v}  \n" for k, v in table.footer) + f"\n```text\n{plot}\n```\n")
    write_output(text, args.output)
    return 0

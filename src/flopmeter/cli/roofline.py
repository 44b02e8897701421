"""``flopmeter roofline SPEC --device-spec NAME``: predicted latency per module (or layer, or
op) on a device from the table (``h100``, ``a100``, ``l4``, …), a calibrated spec (``local``)
or a spec file; each marked compute- or memory-bound with its arithmetic intensity. For
``hf:`` decoders also prefill (the counted forward) and decode per token."""

from __future__ import annotations

import argparse
import json
from copy import copy
from dataclasses import replace

from ..api import count
from ..bench.roofline import Roofline, decode_estimate, kv_bytes_per_token, roofline
from ..devices import get_device
from ..errors import InputError
from ..frontends import is_hf
from ..kernels import device_for
from ..render.tables import Table
from ..render.units import duration
from ..trace.io import SUFFIX as TRACE_SUFFIX
from .argtypes import non_empty, positive_int, tree_depth
from .common import (
    add_input_options,
    add_output_options,
    count_spec,
    output_format,
    write_output,
)

VIEWS = ("tree", "layers", "ops")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter roofline",
                                description="Predicted latency per module on a device (roofline).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--device-spec", type=non_empty, required=True, metavar="NAME",
                   help="h100, h100-pcie, h200, a100, a100-40gb, l4, l40s, rtx-4090, rtx-3090, t4, v100, mi300x, … "
                        "(loose names); 'local' after flopmeter calibrate; or a spec .json file")
    p.add_argument("--tf32", action="store_true", help="float32 matrix products run as TF32 (the device's tf32 peak)")
    p.add_argument("--no-conv-tf32", action="store_true",
                   help="float32 convolutions at the fp32 peak (default: TF32, cuDNN's default, where the device has it)")
    p.add_argument("--no-overhead", action="store_true", help="leave out the calibrated per-op overhead")
    p.add_argument("--view", choices=VIEWS, default=None,
                   help="tree: modules to --depth (default); layers: the costliest leaf modules; ops: the costliest ops")
    p.add_argument("--depth", type=tree_depth, default=None, help="tree depth (default 2, -1 for all)")
    p.add_argument("--top", type=positive_int, default=None, help="rows of the layers and ops views (default 20)")
    p.add_argument("--context", type=positive_int, help="hf: decoders: context length of the decode estimate (default --seq-len)")
    p.add_argument("--plot", metavar="FILE", help="write the roofline plot (.png, .svg, .pdf; the plots extra)")
    add_input_options(p)
    add_output_options(p)
    return p


def _intensity(x: float, raw: bool):
    return (x if x != float("inf") else None) if raw else ("∞" if x == float("inf") else f"{x:.3g}")


def view_table(rl: Roofline, view: str, depth: int | None, top: int, raw: bool) -> Table:
    total = rl.latency or 1.0
    if view == "ops":
        t = Table(["module", "op", "dtype", "FLOPs", "bytes", "FLOPs/byte", "compute", "memory", "predicted",
                   "share", "bound"], [False, False, False, True, True, True, True, True, True, True, False])
        for e in sorted(rl.ops, key=lambda e: e.time_s, reverse=True)[:top]:
            t.rows.append([e.module or "(root)", e.op, e.dtype, e.flops, e.bytes, _intensity(e.intensity, raw),
                           duration(e.compute_s, raw), duration(e.memory_s, raw), duration(e.time_s, raw),
                           f"{100 * e.time_s / total:.1f}%", e.bound])
        return t
    measured = any(m.measured_s for m in rl.modules.values())
    cols = ["module", "type", "FLOPs", "bytes", "FLOPs/byte", "compute", "memory", "predicted", "share", "bound"]
    cols += ["measured", "predicted / measured"] if measured else []
    t = Table(cols, [False, False] + [True] * 7 + [False] + [True, True] * measured)
    if view == "layers":
        rows = rl.costliest(top)
    else:
        rows = [m for m in rl.modules.values() if depth is None or m.depth <= depth]
    root_label = rl.report.model.rsplit(":", 1)[-1]
    t.keys = []
    for m in rows:
        label = m.path if view == "layers" else "  " * m.depth + (m.path.rsplit(".", 1)[-1] if m.path else root_label)
        row = [label, m.type, m.flops, m.bytes, _intensity(m.intensity, raw), duration(m.compute_s, raw),
               duration(m.memory_s, raw), duration(m.time_s, raw), f"{100 * m.time_s / total:.1f}%", m.bound]
        if measured:
            row += [duration(m.measured_s, raw) if m.measured_s else "", f"{m.ratio:.2f}" if m.ratio else ""]
        t.keys.append(m.path)
        t.rows.append(row)
    return t


def header(rl: Roofline, decode=None) -> list[tuple[str, str]]:
    d = rl.device
    scale, unit = (1e12, "TFLOP/s") if d.matrix.get("fp32", d.vector) >= 1e12 else (1e9, "GFLOP/s")
    peaks = ", ".join(f"{k} {v / scale:.4g}" for k, v in d.matrix.items())
    peaks += "".join(f"; {c} " + ", ".join(f"{k} {v / scale:.4g}" for k, v in p.items()) for c, p in d.classes.items())
    items = [("model", rl.report.model), ("inputs", ", ".join(map(repr, rl.report.inputs))),
             ("device", f"{d.name} ({d.kind}), {unit}: matmul {peaks}; vector {d.vector / scale:.4g}; "
                        f"memory {d.bandwidth / 1e9:.4g} GB/s" + (f"; {d.overhead * 1e6:.3g} µs per op"
                                                                    if d.overhead and rl.overhead else "")),
             ("source", d.source),
             ("predicted", f"{duration(rl.latency, False)} per batch of {rl.batch} "
                           f"({rl.throughput:,.1f} per second), {rl.model.bound}-bound "
                           f"(compute {duration(rl.model.compute_s, False)}, memory {duration(rl.model.memory_s, False)} "
                           f"summed over ops)")]
    if decode is not None:
        tokens = rl.batch * (rl.report.inputs[0].shape[1] if rl.report.inputs[0].ndim > 1 else 1)
        items.append(("prefill", f"{duration(rl.latency, False)} for {tokens} tokens ({tokens / rl.latency:,.0f} tokens/s)"))
        text = (f"{duration(decode.analytic_s, False)} per step at context {decode.context} "
                f"({decode.tokens_per_s:,.1f} tokens/s) = (weights {decode.weight_bytes / 1e9:.3g} GB + "
                f"KV cache {decode.kv_bytes / 1e9:.3g} GB) / bandwidth")
        if decode.op_level_s:
            text += (f"; op-level (a one-token forward's roofline + reading the cache): "
                     f"{duration(decode.op_level_s, False)}, {decode.op_level_s / decode.analytic_s:.2f}× that")
        items.append(("decode", text))
    items += [("note", n) for n in rl.notes]
    kernels = getattr(rl.report, "kernels", None)
    if kernels:                           # which kernels the count took, and whether they are the device's
        from ..render.kernels import record_items
        items += record_items(kernels, budget=d, torch_version=rl.report.torch_version)
    return items


def _is_decoder(model) -> bool:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    archs = getattr(config, "architectures", None) or []
    return bool(getattr(config, "is_decoder", False)) or any(a.endswith(("CausalLM", "LMHeadModel")) for a in archs)


def run(args) -> int:
    fmt = output_format(args.format, args.output)
    device = get_device(args.device_spec).require_compute()       # a misspelt device fails before the model is built
    for flag, value in (("--top", args.top), ("--context", args.context)):
        if value is not None and value <= 0:
            raise InputError(f"{flag} must be positive, got {value}", hint=f"e.g. {flag} 20")
    seen = {}

    def analyse(model, *inputs, options, **kwargs):
        seen["model"] = model
        if options.mode == "fake":          # the count takes the kernels of the GPU it is asked about
            options = replace(options, device=device_for(device, options.device))
        return count(model, *inputs, options=options, **kwargs)

    # the roofline needs only each op's FLOPs and bytes: an ONNX graph or a saved trace serves as well
    from_graph = args.spec.lower().endswith(".onnx") or args.spec.endswith(TRACE_SUFFIX)
    _check_view_options(args, fmt)
    report = count_spec(args.spec, args, None if from_graph else analyse)
    if args.context is not None and not (is_hf(args.spec) and _is_decoder(seen.get("model"))):
        raise InputError("--context sets the context of the decode estimate, which only hf: decoders get",
                         hint="leave --context out")
    rl = roofline(report, device, tf32=args.tf32, conv_tf32=not args.no_conv_tf32, overhead=not args.no_overhead)
    decode = None
    if is_hf(args.spec) and _is_decoder(seen.get("model")):
        per_token = kv_bytes_per_token(seen["model"].config, _param_itemsize(report))
        if per_token:
            one = copy(args)
            one.seq_len = 1
            one_token = count_spec(args.spec, one, analyse)
            seq = report.inputs[0].shape[1]
            decode = decode_estimate(report, device, context=args.context or seq, kv_per_token=per_token,
                                     one_token=one_token, tf32=args.tf32, overhead=not args.no_overhead)
    if args.plot:
        from ..bench.plot import plot_roofline
        plot_roofline(rl, args.plot)
    if fmt == "json":
        d = rl.to_dict()
        if report.kernels is not None:
            d["kernels"] = report.kernels
        if decode is not None:
            d["decode"] = decode.to_dict()
        write_output(json.dumps(d, indent=2), args.output)
        return 0
    from ..render import get_renderer
    raw = args.raw or fmt == "csv"
    depth = 2 if args.depth is None else args.depth
    table = view_table(rl, args.view or "tree", None if depth < 0 else depth, args.top or 20, raw)
    body = get_renderer(fmt).table(table, args.raw)
    if fmt == "csv":
        write_output(body, args.output)
        return 0
    items = header(rl, decode)
    if fmt == "html":
        from ..render.html import document_html
        title = {"tree": "modules", "layers": "the costliest layers", "ops": "the costliest ops"}[args.view or "tree"]
        write_output(document_html(items, [plot_block(rl), (f"Predicted time: {title}", table)], args.raw),
                     args.output)
        return 0
    from ..render.text import facts_text
    head = facts_text(items, fmt)
    write_output(head + "\n\n" + body, args.output)
    return 0


def _check_view_options(args, fmt: str) -> None:
    """--view, --depth and --top where they would be ignored are refused (before any counting)."""
    given = [flag for flag, value in (("--view", args.view), ("--depth", args.depth), ("--top", args.top))
             if value is not None]
    if fmt == "json" and given:
        raise InputError(f"{', '.join(given)} shape the table; JSON always holds every module",
                         hint="leave them out, or use --format table, md, csv or html")
    if args.top is not None and (args.view or "tree") == "tree":
        raise InputError("--top applies to the layers and ops views", hint="add --view layers or --view ops")
    if args.depth is not None and args.view in ("layers", "ops"):
        raise InputError(f"--depth applies to the tree view; the {args.view} view lists the costliest rows",
                         hint="use --top N for the number of rows")


def plot_block(rl: Roofline) -> tuple[str, object]:
    """The roofline plot for an HTML page: an inline SVG, or a line saying why there is none."""
    from ..bench.plot import roofline_svg
    from ..errors import MissingDependencyError
    from ..render.html import Image
    try:
        return "Roofline", Image("image/svg+xml", roofline_svg(rl), f"roofline of {rl.report.model} on {rl.device.name}")
    except MissingDependencyError as exc:
        return "Roofline", f"no plot: {exc} (pip install 'flopmeter[plots]')"
    except InputError as exc:
        return "Roofline", f"no plot: {exc}"


def _param_itemsize(report) -> int:
    """Bytes per element of the model's parameters (the KV cache is kept in the same dtype)."""
    p = report.params
    return round(p.bytes / p.count) if p.count else 4


__all__ = ["parser", "plot_block", "run", "view_table"]

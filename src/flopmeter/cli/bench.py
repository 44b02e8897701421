"""``flopmeter bench SPEC [SPEC …]``: measured latency and throughput next to the counts —
the survey table (model | input | params | MACs | FLOPs | throughput | latency p50/p90 |
achieved TFLOP/s) — and, with ``--layers``, measured time per module and per op type."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from ..cost import CONVENTIONS
from ..errors import InputError, OptionsError
from ..render.escape import visible
from ..render.tables import Table
from .argtypes import MAX_INT, non_empty, positive_float, positive_int, tree_depth
from .common import add_output_options, note, output_format, progress, write_output


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"cannot read '{text}' as a list of numbers", hint="write it as 1,2,8") from None
    if not values or any(not 1 <= v <= MAX_INT for v in values):
        raise InputError(f"'{text}' must list whole numbers from 1 to {MAX_INT:,}", hint="write it as 1,2,8")
    return values


def add_survey_options(p: argparse.ArgumentParser) -> None:
    """Options bench and sweep share: sizes, batches, device, dtype, layout, timing."""
    g = p.add_argument_group("inputs")
    g.add_argument("--input-size", metavar="S[,S…]", help="image sizes, e.g. 200,224,256 or 224x160 "
                   "(replaces the height and width of the model's image input; default: the model's own)")
    g.add_argument("--batch", metavar="N[,N…]", help="batch sizes, e.g. 1,2,8 (default: the model's own, 1)")
    g.add_argument("--seq-len", type=positive_int, help="sequence length for hf: text models (default 128)")
    g.add_argument("--dtype", type=non_empty, help="model and input dtype: float32 (default), float16, bfloat16")
    g.add_argument("--convention", default="dot", choices=tuple(CONVENTIONS), help="FLOP convention (default dot)")
    t = p.add_argument_group("timing")
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default cpu)")
    t.add_argument("--channels-last", action="store_true", help="channels-last memory format for 4-d tensors")
    t.add_argument("--min-time", type=positive_float, default=1.0, help="seconds of timing at least (default 1)")
    t.add_argument("--max-time", type=positive_float, default=10.0,
                   help="seconds of timing at most, while the spread stays above 5%% (default 10)")
    t.add_argument("--threads", type=positive_int, help="torch threads while timing (default: torch.get_num_threads())")


def survey_options(args, *, measure: bool):
    from ..bench.survey import SurveyOptions, parse_size

    if args.dtype:
        from .common import parse_dtype
        args.dtype = str(parse_dtype(args.dtype)).replace("torch.", "")
    if args.device == "cuda" and measure:
        import torch
        if not torch.cuda.is_available():
            raise OptionsError("--device cuda: no CUDA device is available here", hint="use --device cpu")
    if args.threads is not None and args.threads < 1:
        raise OptionsError("--threads must be at least 1", hint="e.g. --threads 4")
    sizes = [parse_size(s) for s in args.input_size.split(",")] if args.input_size else []
    batches = _ints(args.batch) if args.batch else []
    opts = SurveyOptions(convention=args.convention, dtype=args.dtype, device=args.device,
                         channels_last=args.channels_last, seq_len=args.seq_len, measure=measure,
                         min_time=args.min_time, max_time=args.max_time, threads=args.threads)
    return opts, sizes, batches


def _num(value, digits: int):
    """A float cell rounded for reading (CSV and JSON get the rows' full values elsewhere)."""
    if value in (None, ""):
        return ""
    return round(float(value), digits)


def _compact(inputs) -> str:
    """'float32[2, 3, 224, 224]' → '2×3×224×224' (the dtype is in the note under the table)."""
    if not inputs:
        return ""
    import re
    return re.sub(r"\w+\[([^\]]*)\]", lambda m: "×".join(m.group(1).split(", ")), inputs)


def survey_table(rows: list[dict], *, measured: bool, convention: str) -> Table:
    cols = ["model", "input", "params", "MACs", f"FLOPs ({convention})"]
    numeric = [False, False, True, True, True]
    if measured:
        cols += ["items/s", "p50 ms", "p90 ms", "spread", "TFLOP/s"]
        numeric += [True] * 5
    cols.append("error")
    numeric.append(False)
    t = Table(cols, numeric)
    for r in rows:
        def whole(key):
            v = r.get(key)
            return int(v) if v not in (None, "") else ""
        cells = [r["model"], _compact(r.get("input")), whole("params"), whole("macs"), whole("flops")]
        if measured:
            spread = r.get("spread")
            cells += [_num(r.get("throughput"), 1), _num(r.get("p50_ms"), 2), _num(r.get("p90_ms"), 2),
                      f"{100 * float(spread):.1f}%" if spread not in (None, "") else "",
                      _num(r.get("achieved_tflops"), 4)]
        cells.append(r.get("error") or "")
        t.rows.append(cells)
    if not any(r.get("error") for r in rows):
        t.columns, t.numeric, t.rows = t.columns[:-1], t.numeric[:-1], [row[:-1] for row in t.rows]
    return t


def layers_table(profile, depth: int | None) -> Table:
    t = Table(["module", "type", "calls", "time (ms)", "share", "FLOPs", "GFLOP/s", "bytes", "GB/s"],
              [False, False, True, True, True, True, True, True, True])
    whole = profile.profiled or 1.0
    for m in profile.modules.values():
        level = 0 if not m.path else m.path.count(".") + 1
        if depth is not None and depth >= 0 and level > depth:
            continue
        label = "  " * level + (m.path.rsplit(".", 1)[-1] if m.path else "(model)")
        t.rows.append([label, m.type, m.calls, _num(1e3 * m.total, 3), f"{100 * m.total / whole:.1f}%",
                       m.flops if m.flops is not None else "",
                       _num(m.achieved_flops / 1e9, 2) if m.flops else "",
                       m.bytes if m.bytes is not None else "", _num((m.achieved_bytes or 0) / 1e9, 2)])
    return t


def ops_table(profile, top: int = 12) -> Table:
    t = Table(["op", "self time (ms)", "share"], [False, True, True])
    whole = profile.profiled or 1.0
    for name, sec in list(profile.ops.items())[:top]:
        t.rows.append([name, _num(1e3 * sec, 3), f"{100 * sec / whole:.1f}%"])
    return t


def layers_summary(profile) -> str:
    return (f"per-layer times: one profiled run of {profile.iterations} forwards; profiled forward "
            f"{1e3 * profile.profiled:.2f} ms against the unprofiled p50 {1e3 * (profile.whole or 0):.2f} ms "
            f"(profiler overhead {100 * (profile.overhead or 0):+.1f}%); leaf modules sum to "
            f"{1e3 * profile.leaf_sum:.2f} ms, {1e3 * profile.outside_leaves:.2f} ms run in container forwards "
            f"outside any leaf module")


def measured_on(rows: list[dict]) -> str | None:
    """What the first measured row ran on and how (None when nothing was measured)."""
    r = next((r for r in rows if r.get("p50_ms") is not None), None)
    if r is None:
        return None
    return (f"{r['device_name']} ({r['device']}), {r['threads']} thread(s), {r['dtype']}, "
            "torch inference_mode, eval, random weights (seed 0)")


def _html(rows, profiles, rooflines, args, opts, where: str | None) -> str:
    """One HTML document: the survey table, then each model's layer and op tables, then each
    roofline comparison with its plot."""
    from ..render.html import document_html
    from .roofline import plot_block
    facts = [("measured on", where)] if where else []
    blocks = [("Measured", survey_table(rows, measured=True, convention=opts.convention))]
    depth = None if args.depth < 0 else args.depth
    for r, prof in profiles:
        title = f"{r['model']} {r['input']}"
        blocks += [(f"{title}: time per module", layers_summary(prof)), ("", layers_table(prof, depth)),
                   (f"{title}: time per op type", ops_table(prof))]
    for r, rl in rooflines:
        blocks += [(f"{r['model']} {r['input']}: predicted and measured per layer", roofline_summary(rl)),
                   ("", roofline_table(rl, args.top)), plot_block(rl)]
    return document_html(facts, blocks, args.raw)


def _roofline_device(args):
    """The --roofline device spec, read before anything is measured (a misspelt name fails at once)."""
    if args.top <= 0:
        raise InputError(f"--top must be positive, got {args.top}", hint="e.g. --top 10")
    for flag in ("tf32", "plot"):
        if getattr(args, flag) and not args.roofline:
            raise OptionsError(f"--{flag} needs --roofline DEVICE_SPEC",
                               hint=f"add --roofline A100 (a device name or spec file) to use --{flag}")
    if not args.roofline:
        return None
    from ..devices import get_device, normalise
    if args.plot:
        from ..bench.plot import check_plot_path
        check_plot_path(args.plot)
    name = f"local-{args.device}" if normalise(args.roofline) == "local" else args.roofline
    return get_device(name)            # 'local': the calibration of the device being timed


def _measured_roofline(m, device, tf32: bool, name: str):
    """The roofline of the timed call with each module's measured time (the profile's; the model's
    own is the unprofiled p50)."""
    from ..bench.roofline import roofline
    if m.report is None:
        raise InputError("--roofline: the model could not be counted, so there is nothing to predict",
                         hint="; ".join(m.warnings) or None)
    m.report.model = name                      # the spec, not the class name of the counted copy
    measured = {path: lt.total for path, lt in m.layers.modules.items()}
    measured[""] = m.p50
    return roofline(m.report, device, measured=measured, tf32=tf32)


def roofline_summary(rl) -> str:
    model = rl.model
    return (f"on {rl.device.name} ({rl.device.kind}) predicted {1e3 * model.time_s:.3f} ms per batch of {rl.batch}, "
            f"{model.bound}-bound; measured p50 {1e3 * model.measured_s:.3f} ms (predicted / measured "
            f"{model.ratio:.2f}). Layers by measured time (torch.profiler ranges); a layer is measured compute- "
            f"(memory-) bound when it reaches half the roof the estimate used, 'neither' when it reaches half of neither")


def roofline_table(rl, top: int) -> Table:
    t = Table(["layer", "type", "FLOPs/B", "pred. ms", "meas. ms", "pred/meas", "GFLOP/s", "GB/s", "bound",
               "meas. bound"],
              [False, False, True, True, True, True, True, True, False, False])
    for m in rl.costliest(top, by="measured"):
        if not m.measured_s:
            continue
        t.rows.append([m.path, m.type, _num(m.intensity, 3) if m.bytes else "", _num(1e3 * m.time_s, 4),
                       _num(1e3 * m.measured_s, 4), _num(m.ratio, 2), _num(m.achieved_flops / 1e9, 2),
                       _num(m.achieved_bandwidth / 1e9, 2), m.bound, m.measured_bound])
    return t


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool):
    """The profiler's native library logs start/stop lines to file descriptor 2; hide them for the run."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter bench",
                                description="Measured throughput and latency next to params, MACs and FLOPs.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    add_survey_options(p)
    p.add_argument("--layers", action="store_true", help="also time every module and op type (torch.profiler)")
    p.add_argument("--depth", type=tree_depth, default=2, help="module depth of the --layers table (-1: all)")
    p.add_argument("--layer-iterations", type=positive_int, default=3, help="forwards in the --layers profile (default 3)")
    r = p.add_argument_group("roofline")
    r.add_argument("--roofline", type=non_empty, metavar="DEVICE_SPEC",
                   help="predicted latency per layer on this device spec (e.g. local after flopmeter calibrate, "
                        "h100) next to the measured one and their ratio (implies --layers)")
    r.add_argument("--top", type=positive_int, default=10, help="layers of the --roofline table, costliest measured first "
                                                       "(default 10)")
    r.add_argument("--tf32", action="store_true", help="--roofline: float32 matrix products run as TF32")
    r.add_argument("--plot", metavar="FILE", help="--roofline: write the roofline plot with the measured points "
                                                  "of the first SPEC (.png, .svg, .pdf; the plots extra)")
    add_output_options(p)
    return p


def run(args) -> int:
    from ..bench.survey import count_row, expand, measure_row

    fmt = output_format(args.format, args.output)
    device_spec = _roofline_device(args)
    args.layers = args.layers or device_spec is not None
    opts, sizes, batches = survey_options(args, measure=True)
    rows, profiles, rooflines = [], [], []
    for case in expand(args.specs, sizes, batches):
        with progress(f"counting {case.spec} …"):
            row = count_row(case, opts, catch=False)
        with progress(f"timing {case.spec} …"), quiet_native_stderr(args.layers and not args.debug):
            m = measure_row(case, opts, row, layers=args.layers, catch=False,
                            layer_iterations=max(1, args.layer_iterations))
        rows.append(row)
        for w in m.warnings:
            print(visible(f"warning: {case.spec}: {w}"), file=sys.stderr)
        if m.layers is not None:
            m.layers.convention = opts.convention
            profiles.append((row, m.layers))
        if device_spec is not None:
            rooflines.append((row, _measured_roofline(m, device_spec, args.tf32, row["model"])))
    if args.plot and rooflines:
        from ..bench.plot import plot_roofline
        plot_roofline(rooflines[0][1], args.plot)
    where = measured_on(rows)
    if where:
        note(f"measured on {where}")
    if fmt == "json":
        out = {"rows": rows, "layers": [dict(p.to_dict(), model=r["model"], size=r["size"], batch=r["batch"])
                                        for r, p in profiles]}
        if rooflines:
            out["roofline"] = [dict(rl.to_dict(), size=r["size"], batch_size=r["batch"]) for r, rl in rooflines]
        write_output(json.dumps(out, indent=2), args.output)
        return 0
    if fmt == "html":
        write_output(_html(rows, profiles, rooflines, args, opts, where), args.output)
        return 0
    from ..render import get_renderer
    renderer = get_renderer(fmt)
    parts = [renderer.table(survey_table(rows, measured=True, convention=opts.convention), args.raw)]
    for r, prof in profiles:
        depth = None if args.depth < 0 else args.depth
        title = f"{r['model']} {r['input']}"
        parts += [f"\n{title}: {layers_summary(prof)}\n", renderer.table(layers_table(prof, depth), args.raw),
                  "", renderer.table(ops_table(prof), args.raw)]
    for r, rl in rooflines:
        parts += [f"\n{r['model']} {r['input']}: {roofline_summary(rl)}\n",
                  renderer.table(roofline_table(rl, args.top), args.raw)]
    write_output("\n".join(parts), args.output)
    return 0


__all__ = ["add_survey_options", "parser", "run", "survey_options", "survey_table"]

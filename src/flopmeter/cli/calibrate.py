"""``flopmeter calibrate [--device cpu|cuda]``: measure this machine's matmul throughput per
dtype, memory bandwidth, vector throughput and per-op overhead, save it as a device spec in
the user's cache directory (its path is printed) for ``--device-spec local``."""

from __future__ import annotations

import argparse
import json

from ..devices import check_cache_dir, normalise, save_local, table as device_table
from ..errors import InputError
from .argtypes import non_empty, positive_float, positive_int
from .common import add_output_options, note, output_format, progress, write_output


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter calibrate",
                                description="Measure this machine and save it as the device spec 'local'.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="what to measure (default cpu)")
    p.add_argument("--threads", type=positive_int, help="CPU threads to time with (default: torch.get_num_threads())")
    p.add_argument("--dtypes", type=non_empty, help="comma-separated matmul dtypes (default cpu: fp32,bf16,fp16; "
                                    "cuda: fp32,tf32,bf16,fp16,fp8,int8)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall (default) or cpu: the process's CPU time, so that waiting for a core another job "
                        "holds does not count (shared machines; needs --threads 1)")
    p.add_argument("--min-run-time", type=positive_float, default=0.5,
                   help="seconds of timing per measurement (torch.utils.benchmark blocked_autorange)")
    add_output_options(p)
    return p


def rate_text(flops: float) -> str:
    """80.1e9 → '80.1 GFLOP/s' (the unit that keeps the number readable)."""
    for scale, unit in ((1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s")):
        if flops >= scale:
            return f"{flops / scale:.4g} {unit}"
    return f"{flops:.4g} FLOP/s"


def datasheet_row(hardware: str):
    """The device table's row whose name or alias is the longest one inside ``hardware``
    ('NVIDIA H100 80GB HBM3' → H100 SXM), or None."""
    text = normalise(hardware)
    best = None
    for spec in device_table():
        for key in (spec.name, *spec.aliases):
            k = normalise(key)
            if k and k in text and (best is None or len(k) > len(best[0])):
                best = (k, spec)
    return best[1] if best else None


def run(args) -> int:
    from ..bench.calibrate import calibrate
    from ..render import get_renderer
    from ..render.tables import Table

    if args.threads is not None and args.threads <= 0:
        raise InputError(f"--threads must be positive, got {args.threads}", hint="e.g. --threads 4")
    dtypes = tuple(d.strip() for d in args.dtypes.split(",")) if args.dtypes else None
    check_cache_dir()          # before minutes of timing, not after
    with progress(f"timing matrix products, copies and small ops on {args.device} …"):
        spec = calibrate(args.device, dtypes=dtypes, threads=args.threads, min_run_time=args.min_run_time,
                         clock=args.clock)
    path = save_local(spec, args.device)
    fmt = output_format(args.format, args.output)
    if fmt == "json":
        write_output(json.dumps({**spec.to_dict(), "path": str(path)}, indent=2), args.output)
        return 0
    sheet = datasheet_row(spec.extra.get("hardware", "")) if args.device == "cuda" else None
    t = Table(["figure", "measured"] + (["datasheet", "measured / datasheet"] if sheet else []),
              [False, True] + ([True, True] if sheet else []))
    for key, value in spec.matrix.items():
        row = [f"matmul {key} (n={spec.extra['sizes'][key]})", rate_text(value)]
        if sheet:
            ref = sheet.matrix.get(key)
            row += [rate_text(ref), f"{value / ref:.2f}"] if ref else ["—", "—"]
        t.rows.append(row)
    for op_class, peaks in spec.classes.items():
        for key, value in peaks.items():
            t.rows.append([f"{op_class} {key} (batch {spec.extra['sizes'][f'{op_class} {key}']})",
                           rate_text(value)] + (["—", "—"] if sheet else []))
    for label, value, ref, text in (
            ("memory bandwidth (copy)", spec.bandwidth, sheet and sheet.bandwidth, lambda v: f"{v / 1e9:.4g} GB/s"),
            ("vector (fp32 add)", spec.vector, sheet and sheet.vector, rate_text)):
        row = [label, text(value)]
        if sheet:
            row += [text(ref), f"{value / ref:.2f}"]
        t.rows.append(row)
    t.rows.append(["overhead per op", f"{spec.overhead * 1e6:.3g} µs"] + (["—", "—"] if sheet else []))
    for key, why in spec.extra["skipped"].items():
        t.rows.append([f"matmul {key}", f"skipped ({why})"] + (["—", "—"] if sheet else []))
    if fmt == "csv":
        note(f"saved to {path}")
        write_output(get_renderer(fmt).table(t, True), args.output)
        return 0
    lines = [f"device  {spec.source}"]
    if sheet:
        lines.append(f"datasheet  {sheet.name}: {sheet.source}")
    text = "\n".join(lines) + "\n\n" + get_renderer(fmt).table(t, True)
    text += f"\n\nsaved to {path}\nuse it with: flopmeter roofline SPEC --device-spec local"
    write_output(text, args.output)
    return 0


__all__ = ["datasheet_row", "parser", "run"]

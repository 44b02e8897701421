"""Survey rows: one model SPEC at one input size and batch, counted (fake tensors) and, when
asked, measured (real random weights, seeded) — the columns research surveys print.

A row is a flat dict (``ROW_FIELDS``) so that it can be written as one JSONL line or one CSV
row the moment it is done. ``count_row`` never raises for a model's own failure: the error
goes into the row's ``error`` field and the sweep goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError, ModelForwardError

COUNT_FIELDS = ["model", "size", "batch", "input", "params", "macs", "flops", "convention"]
MEASURE_FIELDS = ["device", "device_name", "threads", "dtype", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "spread",
                  "throughput", "achieved_tflops", "blocks", "warnings"]
ROW_FIELDS = COUNT_FIELDS + MEASURE_FIELDS + ["error"]


@dataclass(frozen=True)
class Case:
    """One row to produce: a SPEC, an input size (H, W) or None for the model's default, a batch or None."""

    spec: str
    size: tuple[int, int] | None = None
    batch: int | None = None

    @property
    def size_text(self) -> str:
        if self.size is None:
            return ""
        h, w = self.size
        return str(h) if h == w else f"{h}x{w}"

    @property
    def key(self) -> str:
        return f"{self.spec}|{self.size_text}|{self.batch or ''}"


def row_key(row: dict) -> str:
    return f"{row.get('model', '')}|{row.get('size') or ''}|{row.get('batch') or ''}"


@dataclass(frozen=True)
class SurveyOptions:
    convention: str = "dot"
    dtype: str | None = None            # "float16", … (a name, so the options pickle to worker processes)
    device: str = "cpu"
    channels_last: bool = False
    seq_len: int | None = None
    measure: bool = False
    min_time: float = 1.0
    max_time: float = 10.0
    threads: int | None = None
    seed: int = 0


def parse_size(text: str) -> tuple[int, int]:
    """'224' → (224, 224); '224x160' → (224, 160)."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"cannot read input size '{text}'", hint="write it as 224 or 224x160") from None
    if len(dims) not in (1, 2) or any(d <= 0 for d in dims):
        raise InputError(f"cannot read input size '{text}'", hint="write it as 224 or 224x160")
    return (dims[0], dims[-1])


def expand(specs, sizes, batches) -> list[Case]:
    """Every SPEC × size × batch, in that order (sizes and batches may be empty: the model's default)."""
    return [Case(s, z, b) for s in specs for z in (sizes or [None]) for b in (batches or [None])]


def _dtype(name: str | None):
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"unknown dtype '{name}'", hint="write it as float32, float16 or bfloat16")
    return dtype


def resolve_case(case: Case, opts: SurveyOptions):
    """The case's Resolved front end, its inputs built at the case's size."""
    from ..frontends import InputRequest, resolve

    req = InputRequest(batch=case.batch, seq_len=opts.seq_len, dtype=_dtype(opts.dtype))
    resolved = resolve(case.spec, req)
    if case.size is None:
        return resolved
    make_inputs = resolved.make_inputs

    def sized(device):
        args, kwargs = make_inputs(device)
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor) and a.ndim >= 4 and a.is_floating_point():
                shape = (*a.shape[:-2], *case.size)
                new = torch.randn(shape, dtype=a.dtype, device=device) if device.type != "meta" \
                    else torch.empty(shape, dtype=a.dtype, device=device)
                return (*args[:i], new, *args[i + 1:]), kwargs
        raise InputError(f"{case.spec} takes no image input whose size could be set",
                         hint="leave out --input-size for this model")
    return replace(resolved, make_inputs=sized)


def _count(resolved, opts: SurveyOptions):
    from ..api import Options, count

    base = Options(convention=opts.convention, device=opts.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        try:
            args, kwargs = resolved.make_inputs(torch.device("meta"))
            return count(resolved.model, *args, kwargs=kwargs, options=base)
        except ModelForwardError as exc:
            if not exc.data_dependent or resolved.rebuild is None:
                raise
        model = resolved.rebuild()               # detection: the forward needs real values
        args, kwargs = resolved.make_inputs(torch.device("cpu"))
        return count(model, *args, kwargs=kwargs, options=replace(base, mode="real", device=None))


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = getattr(exc, "hint", None)
    text = f"{text} ({hint})" if hint else text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def count_row(case: Case, opts: SurveyOptions, *, catch: bool = True) -> dict:
    """The counting columns of a row; a failure is written into ``error`` (raised when not ``catch``)."""
    row = dict.fromkeys(ROW_FIELDS)
    row.update(model=case.spec, size=case.size_text, batch=case.batch)
    try:
        resolved = resolve_case(case, opts)
        report = _count(resolved, opts)
        row.update(input=", ".join(map(repr, report.inputs)), params=report.params.count, macs=report.macs,
                   flops=report.flops, convention=report.convention)
    except Exception as exc:      # noqa: BLE001 — one failing model is reported in its row
        if not catch:
            raise
        row["error"] = _error(exc)
    return row


def measure_row(case: Case, opts: SurveyOptions, row: dict, *, layers: bool = False, catch: bool = True,
                layer_iterations: int = 3, count: bool = False):
    """Add the measured columns to a counted ``row`` (in place). Returns the Measurement, or None on failure.
    ``count`` (or ``layers``) also counts the timed call itself (its dtype, device and layout) into
    the Measurement's ``report``."""
    from .timing import MeasureOptions, measure

    if row.get("error"):
        return None
    try:
        resolved = resolve_case(case, opts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            device = torch.device(opts.device)
            model = (resolved.rebuild() if resolved.rebuild is not None else resolved.model).to(device)
            args, kwargs = resolved.make_inputs(device)
        m = measure(model, *args, kwargs=kwargs, options=MeasureOptions(    # device, dtype: for file models' inputs
            device=opts.device, dtype=_dtype(opts.dtype), channels_last=opts.channels_last, min_time=opts.min_time, max_time=opts.max_time,
            threads=opts.threads, count=count or layers, layers=layers, layer_iterations=layer_iterations,
            convention=opts.convention))
        m.flops, m.convention = row["flops"], row["convention"]
        row.update(device=m.device, device_name=m.device_name, threads=m.threads, dtype=m.dtype,
                   p50_ms=1e3 * m.p50, p90_ms=1e3 * m.p90, p99_ms=1e3 * m.p99, mean_ms=1e3 * m.mean,
                   spread=m.spread, throughput=m.throughput, blocks=f"{len(m.times)}x{m.number_per_run}",
                   achieved_tflops=m.achieved_flops / 1e12 if m.achieved_flops is not None else None,
                   warnings="; ".join(m.warnings) or None)
        return m
    except Exception as exc:      # noqa: BLE001
        if not catch:
            raise
        row["error"] = _error(exc)
        return None


__all__ = ["COUNT_FIELDS", "Case", "MEASURE_FIELDS", "ROW_FIELDS", "SurveyOptions", "count_row", "expand",
           "measure_row", "parse_size", "resolve_case", "row_key"]

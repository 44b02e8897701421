"""Sweeps over models × input sizes × batches that survive an afternoon.

- Every finished row is appended to the output (JSONL or CSV) and flushed to disk at once,
  so an interrupted sweep loses nothing but the rows in flight; ``resume`` reads the file and
  skips the rows already there (a half-written last line is cut off first).
- A failing model is reported in its row (``error``) and the sweep goes on.
- Counting runs in ``jobs`` worker processes (``concurrent.futures.ProcessPoolExecutor``,
  started from a fork server that imported torch once, one torch thread each). Measurements run one at a time in this process, after
  the counting pool is shut down: timing next to other work measures the other work.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .survey import ROW_FIELDS, Case, SurveyOptions, count_row, measure_row, row_key

_GLOB = set("*?[")


def expand_specs(patterns: list[str], task: str | None = None) -> list[str]:
    """``torchvision:resnet*``, ``timm:convnext_*`` → the matching SPECs (sorted); other SPECs as given.

    ``task`` restricts torchvision names to one of its model families (``classification``,
    ``segmentation``, ``detection``, ``video``, ``optical_flow``, ``quantization``)."""
    out: list[str] = []
    for pattern in patterns:
        prefix, sep, name = pattern.partition(":")
        if not (sep and _GLOB & set(name)):
            out.append(pattern)
            continue
        if prefix == "torchvision":
            from ..frontends.base import import_optional
            tv = import_optional("torchvision", "zoo")
            module = None
            if task:
                module = tv.models if task == "classification" else getattr(tv.models, task, None)
                if module is None:
                    raise InputError(f"torchvision has no model family '{task}'",
                                     hint="classification, segmentation, detection, video or optical_flow")
            names = tv.models.list_models(module=module)
        elif prefix == "timm":
            from ..frontends.base import import_optional
            names = import_optional("timm", "zoo").list_models()
        else:
            raise InputError(f"cannot expand '{pattern}': patterns work for torchvision: and timm: names",
                             hint="list the models in a file and pass --models-file FILE")
        matched = sorted(n for n in names if fnmatch.fnmatchcase(n, name))
        if not matched:
            raise InputError(f"no {prefix} model matches '{name}'",
                             hint="check the spelling; * matches any run of characters, e.g. torchvision:resnet*")
        out += [f"{prefix}:{n}" for n in matched]
    return out


def read_models_file(path: str) -> list[str]:
    """One SPEC (or pattern) per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}",
                         hint="give --models-file a readable file with one SPEC per line") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _cut_partial_line(path: Path) -> None:
    """An interrupted write can leave half a line at the end: cut the file back to its last newline."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_rows(path: str | Path, fmt: str) -> list[dict]:
    """The rows already in a sweep's output file (JSONL or CSV)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if fmt == "csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(text))]
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue     # a half-written last line
    return rows


class RowWriter:
    """Appends one row at a time to a JSONL or CSV file and flushes it to disk."""

    def __init__(self, path: str | Path, fmt: str, *, append: bool):
        self.path, self.fmt = Path(path), fmt
        if append and self.path.exists():
            _cut_partial_line(self.path)
        fresh = not (append and self.path.exists() and self.path.stat().st_size)
        self.file = open(self.path, "a" if append else "w", newline="")
        if fmt == "csv":
            self.csv = csv.DictWriter(self.file, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
            if fresh:
                self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.fmt == "csv":
            self.csv.writerow(row)
        else:
            self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    import torch
    torch.set_num_threads(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(pool, "terminate_workers", None)      # Python ≥ 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def _context(cases: list[Case]):
    """Worker processes start from a fork server that has imported torch, flopmeter and the zoo
    packages the cases need once (each spawned worker would import them again: seconds each);
    ``spawn`` where there is no fork server (Windows)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    zoo = {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}
    needed = sorted({zoo[c.spec.split(":", 1)[0]] for c in cases if c.spec.split(":", 1)[0] in zoo})
    ctx.set_forkserver_preload(["torch", "flopmeter.bench.survey", *needed])
    return ctx


def _counted(cases: list[Case], opts: SurveyOptions, jobs: int):
    """Yield (case, row) as counts finish: in this process, or in a pool of ``jobs`` processes."""
    if jobs <= 1 or len(cases) <= 1:
        for case in cases:
            yield case, count_row(case, opts)
        return
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(cases), initializer=_worker_init)
    try:
        futures = {pool.submit(count_row, case, opts): case for case in cases}
        for fut in as_completed(futures):
            case = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:      # noqa: BLE001 — a worker that died (out of memory, a crash)
                row = dict.fromkeys(ROW_FIELDS)
                row.update(model=case.spec, size=case.size_text, batch=case.batch,
                           error=f"{type(exc).__name__}: the worker process failed")
            yield case, row
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def run_sweep(cases: list[Case], opts: SurveyOptions, writer: RowWriter | None, *, jobs: int = 1,
              on_start: Callable[[int], None] | None = None,
              on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Count (and measure, with ``opts.measure``) every case; each finished row goes to ``writer`` and ``on_row``.

    ``on_start(n)`` is told how many rows will run. Returns the new rows."""
    rows: list[dict] = []
    if on_start:
        on_start(len(cases))

    def finish(row):
        if writer is not None:
            writer.write(row)
        rows.append(row)
        if on_row:
            on_row(row)

    if not opts.measure:
        for _, row in _counted(cases, opts, jobs):
            finish(row)
        return rows
    counted = list(_counted(cases, opts, jobs))      # the pool is shut down before anything is timed
    order = {c.key: i for i, c in enumerate(cases)}
    for case, row in sorted(counted, key=lambda cr: order[cr[0].key]):
        measure_row(case, opts, row)
        finish(row)
    return rows


def pending(cases: list[Case], done_rows: list[dict], *, retry_failed: bool = False) -> list[Case]:
    """The cases whose rows are not in ``done_rows`` (failed ones too, unless ``retry_failed``)."""
    done = {row_key(r): r for r in done_rows}
    return [c for c in cases if c.key not in done or (retry_failed and done[c.key].get("error"))]


__all__ = ["RowWriter", "expand_specs", "pending", "read_models_file", "read_rows", "run_sweep"]

"""Sweeps over models × input sizes × batches that survive an afternoon.

- Every finished row is appended to the output (JSONL or CSV) and flushed to disk at once,
  so an interrupted sweep loses nothing but the rows in flight; ``resume`` reads the file and
  skips the rows already there (a half-written last line is cut off and its row runs again).
  The file is locked while a sweep writes it: a second sweep on it is refused.
- A failing model is reported in its row (``error``) and the sweep goes on; so is a model
  whose worker process dies (the other rows in flight run again).
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
import select
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..files import output_target
from .survey import ROW_FIELDS, Case, SurveyOptions, count_row, measure_row, row_key

try:
    import fcntl
except ImportError:         # Windows: no advisory locks
    fcntl = None

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
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}",
                         hint="give --models-file a readable file with one SPEC per line") from None
    lines = _utf8(data, path).splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _utf8(data: bytes, path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path} is not UTF-8 text (line {line}, byte {exc.start})",
                         hint="save it as UTF-8, or write the rows to a new file with -o") from None


def _whole_lines(data: bytes) -> bytes:
    """The file up to its last newline: every row ends in one, so a last line without one was cut off mid-write."""
    return data[:data.rfind(b"\n") + 1]


_NOT_ROWS = "this is not a file of sweep rows: fix or remove that line, or write to a new file with -o"


def parse_rows(data: bytes, fmt: str, path: str | Path) -> list[dict]:
    """The rows in the bytes of a sweep's output file (JSONL or CSV), a torn last line left out.

    A line that is not a row (not JSON, not an object, no ``model``) is an InputError naming it."""
    text = _utf8(_whole_lines(data), path)
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        try:
            rows = [dict(r) for r in reader]
        except csv.Error as exc:
            raise InputError(f"{path} line {reader.line_num} is not CSV: {exc}", hint=_NOT_ROWS) from None
        if reader.fieldnames is not None and list(reader.fieldnames) != ROW_FIELDS:
            raise InputError(f"{path}: its header is not the columns of a sweep's rows",
                             hint="write the rows to a new file with -o (the columns are those of this version)")
        return rows
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise InputError(f"{path} line {n} is not JSON: nested too deeply", hint=_NOT_ROWS) from None
        except ValueError as exc:
            raise InputError(f"{path} line {n} is not JSON: {exc}", hint=_NOT_ROWS) from None
        if not (isinstance(row, dict) and isinstance(row.get("model"), str) and row["model"]):
            raise InputError(f"{path} line {n} is not a sweep row (a JSON object with a 'model')", hint=_NOT_ROWS)
        rows.append(row)
    return rows


def read_rows(path: str | Path, fmt: str) -> list[dict]:
    """The rows already in a sweep's output file (JSONL or CSV); a torn last line is left out."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}",
                         hint="give -o a rows file you can read, or start a new one without --resume") from None
    return parse_rows(data, fmt, path)


class RowWriter:
    """Appends one row at a time to a JSONL or CSV file and flushes it to disk.

    A regular file (or a new one) is locked (``flock``) for as long as the writer is open, so a
    second sweep on the same file is refused instead of mixing its rows in; with ``append`` the
    rows already there are read under that lock (``earlier``) and a torn last line is cut off
    (``torn`` tells). A character device or a FIFO is written as a stream (no ``append``)."""

    def __init__(self, path: str | Path, fmt: str, *, append: bool):
        self.path, self.fmt = Path(path), fmt
        self.earlier: list[dict] = []
        self.torn = False
        how, where = output_target(path, example=f"rows.{fmt}", hint="give -o a path in a folder you can write to")
        self.stream = how == "stream"
        try:
            if self.stream:
                if append:
                    raise InputError(f"--resume needs a regular file to read the earlier rows from; {path} is not one",
                                     hint="write the rows to a file: -o rows.jsonl")
                self.file = open(where, "w", newline="", encoding="utf-8")
                fresh = True
            else:
                fd = os.open(where, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
                try:
                    fresh = self._take(fd, append)
                except BaseException:
                    os.close(fd)
                    raise
                self.file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}",
                             hint="give -o a path in a folder you can write to") from None
        if fmt == "csv":
            self.csv = csv.DictWriter(self.file, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
            if fresh:
                self.csv.writeheader()
                self.file.flush()

    def _take(self, fd: int, append: bool) -> bool:
        """Lock the file, read the earlier rows (with ``append``) or empty it; whether it starts empty."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"another sweep is writing {self.path}",
                                 hint="wait until it ends, or give this sweep another -o file") from None
        keep = b""
        if append:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            keep = _whole_lines(data)
            self.earlier = parse_rows(keep, self.fmt, self.path)
            self.torn = len(keep) < len(data)
        os.ftruncate(fd, len(keep))
        os.lseek(fd, 0, os.SEEK_END)
        return not keep

    def write(self, row: dict) -> None:
        if self.fmt == "csv":
            self.csv.writerow(row)
        else:
            self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if not self.stream:
            os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()          # closing the descriptor releases the lock


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    import torch
    torch.set_num_threads(1)


def _exit_with(parent: int) -> None:
    """End this worker when the sweep process ``parent`` ends, however it ends (SIGKILL too): a
    worker holds its own queue's pipe open, so without this it, the fork server and the resource
    tracker (which stay while a worker holds their pipes) would wait for ever."""
    try:
        fd = os.pidfd_open(parent)                    # Linux ≥ 5.3: readable once the process has ended
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
        os._exit(1)
    if os.name != "posix":                            # os.kill(pid, 0) would end the process on Windows
        return
    while True:                                       # other POSIX systems: ask every half second
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _count_in_worker(index: int, case: Case, opts: SurveyOptions, marks: str) -> dict:
    """count_row in a worker, leaving a mark file first: when a worker dies, the marks tell which rows were in flight."""
    open(os.path.join(marks, str(index)), "w").close()
    return count_row(case, opts)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (a worker in a long count would keep
    the pool, and this process's exit, waiting)."""
    terminate = getattr(pool, "terminate_workers", None)      # Python ≥ 3.14
    if terminate is not None:
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())     # shutdown() drops this dict
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
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


def _failed_row(case: Case, error: str) -> dict:
    row = dict.fromkeys(ROW_FIELDS)
    row.update(model=case.spec, size=case.size_text, batch=case.batch, error=error)
    return row


def _how_it_ended(codes: list[int | None]) -> str:
    for code in codes:
        if code is not None and code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        if code:
            return f"exited with status {code}"
    return "died"


def _round(cases: list[Case], indices: list[int], opts: SurveyOptions, jobs: int, ctx, marks: str):
    """Count ``indices`` in a pool of ``jobs`` workers, yielding (case, row) as they finish. Returns
    the indices lost to a worker that died (the pool is broken then) and the workers' exit codes."""
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(indices)), mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    lost: list[int] = []
    try:
        futures = {}
        for n, i in enumerate(indices):
            try:
                futures[pool.submit(_count_in_worker, i, cases[i], opts, marks)] = i
            except BrokenProcessPool:
                lost += indices[n:]
                break
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                row = fut.result()
            except BrokenProcessPool:
                lost.append(i)
                continue
            except Exception as exc:      # noqa: BLE001 — a result that could not come back
                row = _failed_row(cases[i], f"{type(exc).__name__}: {exc}")
            yield cases[i], row
    except BaseException:
        _stop(pool)
        raise
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=True)
    return lost, [p.exitcode for p in workers]


def _counted(cases: list[Case], opts: SurveyOptions, jobs: int):
    """Yield (case, row) as counts finish: in this process, or in a pool of ``jobs`` processes.

    A worker that dies (out of memory, a crash in native code) breaks its pool: the rows that were
    in flight then run again one at a time, each in a pool of its own, so that only the row that
    kills its worker fails (with how the worker ended); the rows not yet started go on in a new pool."""
    if jobs <= 1 or len(cases) <= 1:
        for case in cases:
            yield case, count_row(case, opts)
        return
    ctx = _context(cases)
    marks = tempfile.mkdtemp(prefix="flopmeter-sweep-")
    try:
        waiting = list(range(len(cases)))
        while waiting:
            lost, codes = yield from _round(cases, waiting, opts, jobs, ctx, marks)
            started = [i for i in lost if os.path.exists(os.path.join(marks, str(i)))]
            waiting = [i for i in lost if i not in started]
            if lost and not started:                  # no row got as far as starting: the workers cannot start
                for i in waiting:
                    yield cases[i], _failed_row(cases[i], f"BrokenProcessPool: the worker process {_how_it_ended(codes)} "
                                                          "before this row started")
                return
            for i in started:
                os.unlink(os.path.join(marks, str(i)))
                alone, codes = yield from _round(cases, [i], opts, 1, ctx, marks)
                if alone:
                    yield cases[i], _failed_row(cases[i], f"BrokenProcessPool: the worker process {_how_it_ended(codes)} "
                                                          f"while counting this row (count it alone: flopmeter {cases[i].spec})")
    finally:
        shutil.rmtree(marks, ignore_errors=True)


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


__all__ = ["RowWriter", "expand_specs", "parse_rows", "pending", "read_models_file", "read_rows", "run_sweep"]

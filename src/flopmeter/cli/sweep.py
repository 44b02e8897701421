"""``flopmeter sweep PATTERN … -o results.jsonl``: count (and with ``--measure`` time) many
models × input sizes × batches, writing each row as it finishes; ``--resume`` skips the rows
already in the file; ``--jobs N`` counts in N worker processes; a progress bar with ETA on
a terminal; the final table sorted by model, size and batch. Ctrl-C and SIGTERM stop the
workers and keep every finished row; a second sweep on the same output file is refused."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from ..errors import InputError, OptionsError
from .argtypes import non_empty, positive_int
from .bench import add_survey_options, survey_options, survey_table
from .common import note, output_format, write_output

ROW_FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter sweep",
                                description="Count (and measure) many models × sizes × batches, row by row.")
    p.add_argument("patterns", nargs="*", metavar="SPEC",
                   help="SPECs or patterns such as 'torchvision:*' or 'timm:convnext_*' (quote them)")
    p.add_argument("--models-file", metavar="FILE", help="a file with one SPEC or pattern per line")
    p.add_argument("--task", type=non_empty, help="torchvision patterns: only this family (classification, segmentation, "
                                  "detection, video, optical_flow)")
    p.add_argument("--measure", action="store_true", help="also time every row (one at a time; default: count only)")
    p.add_argument("-o", "--output", metavar="FILE.jsonl|FILE.csv",
                   help="rows are appended here as they finish (flushed each row)")
    p.add_argument("--resume", action="store_true",
                   help="skip the rows already in the output file, failed ones too (see --retry-failed); "
                        "a last line cut off mid-write is dropped and its row runs again")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: run the rows that failed again")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes for counting (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_survey_options(p)
    from ..render import RENDERERS
    p.add_argument("--format", choices=tuple(RENDERERS),
                   help="the final table's format on stdout (default table; html gives a page with a chart per figure)")
    p.add_argument("--raw", action="store_true", help="exact integers instead of K/M/G/T")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    return p


class _Bar:
    """A rich progress bar with ETA on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.progress = self.task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=False)
            self.progress.__enter__()
        return self

    def start(self, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task("sweep", total=total)

    def advance(self, row: dict) -> None:
        if self.progress is not None:
            mark = "failed" if row.get("error") else "done"
            name = row["model"].rsplit("/", 1)[-1]
            name = name if len(name) <= 28 else name[:27] + "…"
            from rich.markup import escape
            self.progress.update(self.task, advance=1, description=escape(f"{mark}: {name:28}"))

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _sort_key(row: dict):
    def num(v):
        try:
            return int(str(v).split("x")[0])
        except ValueError:
            return 0
    return (row.get("model") or "", num(row.get("size") or 0), num(row.get("batch") or 0))


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the workers are stopped and the finished rows kept."""

    signum = signal.SIGTERM


def _terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:                  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args) -> int:
    from ..bench.survey import expand, row_key
    from ..bench.sweep import RowWriter, expand_specs, pending, read_models_file, run_sweep
    from ..files import output_target

    fmt = output_format(args.format, None)
    if args.jobs < 1:
        raise OptionsError("--jobs must be at least 1", hint="e.g. --jobs 2")
    patterns = list(args.patterns) + (read_models_file(args.models_file) if args.models_file else [])
    if not patterns:
        raise InputError("no models to sweep", hint="give SPECs or patterns, or --models-file FILE")
    row_fmt = None
    if args.output:
        row_fmt = ROW_FORMATS.get(Path(args.output).suffix.lower())
        if row_fmt is None:
            raise InputError(f"cannot tell the row format of '{args.output}'", hint="name it FILE.jsonl or FILE.csv")
        output_target(args.output, example=f"rows.{row_fmt}")      # a directory, a missing folder: before any work
    if args.resume and not args.output:
        raise InputError("--resume needs the output file of the earlier run", hint="pass -o FILE.jsonl")
    opts, sizes, batches = survey_options(args, measure=args.measure)
    cases = expand(expand_specs(patterns, args.task), sizes, batches)
    started = time.perf_counter()
    new: list[dict] = []
    with _sigterm_as_interrupt():
        writer = RowWriter(args.output, row_fmt, append=args.resume) if args.output else None
        try:
            earlier = writer.earlier if writer is not None else []
            todo = pending(cases, earlier, retry_failed=args.retry_failed)
            if args.resume:
                if writer.torn:
                    note(f"the last line of {args.output} was cut off mid-write: its row runs again")
                skipped = {c.key for c in cases} - {c.key for c in todo}
                failed = sum(1 for r in earlier if r.get("error") and row_key(r) in skipped)
                retry = f" ({failed} failed: --retry-failed runs them again)" if failed else ""
                note(f"resuming: {len(cases) - len(todo)} of {len(cases)} rows are already in {args.output}{retry}")
            with _Bar(not args.no_progress) as bar:
                new = run_sweep(todo, opts, writer, jobs=args.jobs, on_start=bar.start, on_row=bar.advance)
        except KeyboardInterrupt:
            if args.output:
                note(f"interrupted: finished rows are in {args.output}; run again with --resume to go on")
            raise
        finally:
            if writer is not None:
                writer.close()
    wall = time.perf_counter() - started
    wanted = {c.key for c in cases}
    by_key = {row_key(r): r for r in earlier if row_key(r) in wanted}
    by_key.update({row_key(r): r for r in new})
    rows = sorted(by_key.values(), key=_sort_key)
    failed = sum(1 for r in rows if r.get("error"))
    note(f"{len(rows)} rows ({len(new)} run now in {wall:.1f} s with --jobs {args.jobs}, "
         f"{len(rows) - len(new)} from the file), {failed} failed")
    if fmt == "json":
        write_output(json.dumps(rows, indent=2), None)
    else:
        from ..render import get_renderer
        table = survey_table(rows, measured=args.measure, convention=opts.convention)
        write_output(get_renderer(fmt).table(table, args.raw), None)
    return 0


__all__ = ["parser", "run"]

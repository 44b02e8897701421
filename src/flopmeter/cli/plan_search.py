"""``flopmeter plan SPEC --cluster 8xH100:4 --search``: every configuration of the cluster planned
(:func:`flopmeter.analyses.parallel.search`), the fastest that fit ranked (``--top``), and the
rejected ones with their reasons; a progress bar on a terminal; Ctrl-C prints what was found."""

from __future__ import annotations

import json
import sys

from ..render.tables import Table
from ..render.units import duration
from .common import note, write_output
from .plan import _bytes


class _Bar:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self):
        self.progress = self.task = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def update(self, done: int, total: int, what: str) -> None:
        if self.progress is None:
            return
        from rich.markup import escape
        if self.task is None:
            self.task = self.progress.add_task("search", total=total)
        self.progress.update(self.task, completed=done, description=escape(f"{what[:48]:48}"))

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


def tables(result, top: int, raw: bool) -> list[tuple[str, Table]]:
    ranked = Table(["rank", "configuration", "step time", "tokens/s", "MFU", "peak per rank", "usable", "trace"],
                   [True, False, True, True, True, True, True, False])
    for i, c in enumerate(result.top(top), 1):
        ranked.rows.append([i, c.label(), duration(c.step_s, raw), c.tokens_per_s if raw else f"{c.tokens_per_s:,.0f}",
                            c.mfu if raw else f"{100 * c.mfu:.1f}%", _bytes(c.peak, raw), _bytes(c.usable, raw),
                            f"#{c.trace + 1}" + (" (shared)" if c.reused else "")])
    rejected = Table(["configuration", "why"], [False, False])
    for c in result.rejected:
        rejected.rows.append([c.label(), c.reason])
    return [(f"The {min(top, len(result.ranked))} fastest of {len(result.ranked)} that fit, per predicted step time",
             ranked), (f"Rejected: {len(result.rejected)}", rejected)]


def run_search(args, options: dict, fmt: str) -> int:
    from ..analyses.parallel.search import search
    with _Bar() as bar:
        result = search(args.spec, progress=bar.update, **options)
    evaluated = len(result.done)
    summary = (f"{len(result.candidates)} configurations of {result.cluster} (world {result.world}), "
               f"{evaluated} evaluated with {result.traces} traces in {result.seconds:.1f} s")
    if result.interrupted:
        note(f"interrupted: {summary}; the ranking below is of those evaluated")
    if fmt == "json":
        write_output(json.dumps(result.to_dict(args.top), indent=2), args.output)
        return 130 if result.interrupted else 0
    from ..render import get_renderer
    renderer = get_renderer(fmt)
    raw = args.raw or fmt == "csv"
    blocks = tables(result, args.top, raw)
    if fmt == "csv":
        write_output(renderer.table(blocks[0][1], True), args.output)
    elif fmt == "md":
        write_output(f"**search**: {summary}\n\n" + "\n\n".join(f"### {t}\n\n{renderer.table(b, raw)}"
                                                                  for t, b in blocks), args.output)
    elif fmt == "html":
        from ..render.html import document_html
        write_output(document_html([("search", summary)], blocks, raw), args.output)
    else:
        write_output(f"search  {summary}\n\n" + "\n\n".join(f"{t}\n{renderer.table(b, raw)}" for t, b in blocks),
                     args.output)
    return 130 if result.interrupted else 0


__all__ = ["run_search", "tables"]

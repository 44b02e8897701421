"""Library loggers kept quiet while a model runs under the recorder: fake tensors log every
failing op with its traceback (the failure then surfaces as one ModelForwardError), and
transformers logs advice about the example inputs a count makes up. Only these loggers and
their handlers are touched, and only for the duration: a filter is added, then removed."""

from __future__ import annotations

import contextlib
import logging

QUIET_LOGGERS = ("torch._subclasses", "torch._dispatch", "torch.fx.experimental", "transformers")


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def quiet_logs(roots: tuple[str, ...] = QUIET_LOGGERS):
    """Drop the records of the ``roots`` loggers and their descendants: at the loggers that exist
    now, and at their handlers (which a logger created meanwhile propagates to)."""
    drop = _Drop()
    prefixes = tuple(f"{root}." for root in roots)
    targets: list[logging.Filterer] = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name in roots or name.startswith(prefixes)):
            targets.append(logger)
            targets.extend(logger.handlers)
    for target in targets:
        target.addFilter(drop)
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(drop)

"""Keep PyTorch (and the model libraries) quiet while the command line counts: their loggers (fake tensors log every
failing op at length) and its warnings are silenced unless ``--debug``, so that a mistake
ends in our one ``error:`` line. flopmeter's own notes (:class:`FlopmeterNote` warnings
from the library) are printed as ``note:`` lines."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path

from ..errors import FlopmeterNote


_QUIET = ("torch", "transformers", "timm")     # libraries whose loggers speak during a count


@contextlib.contextmanager
def quiet_torch(debug: bool = False):
    loggers = [logging.getLogger(root) for root in _QUIET] + [
        lg for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and name.startswith(tuple(f"{root}." for root in _QUIET))]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    if not debug:
        for root in _QUIET:
            logging.getLogger(root).setLevel(logging.CRITICAL + 1)
        for lg in loggers:
            lg.disabled = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for lg, level, disabled in saved:
                lg.setLevel(level)
                lg.disabled = disabled
            _replay(caught, debug)


def _replay(caught, debug: bool) -> None:
    seen = set()
    for w in caught:
        if issubclass(w.category, FlopmeterNote):
            text = str(w.message)
            if text not in seen:
                seen.add(text)
                print(f"note: {text}", file=sys.stderr)
        elif debug or not _library(w.filename):      # the user's own code's warnings still show
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _library(filename: str) -> bool:
    parts = set(Path(filename).parts)
    return bool(parts & {"site-packages", "dist-packages", "flopmeter"}) or filename.startswith("<frozen")

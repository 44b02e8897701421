"""Keep PyTorch (and the model libraries) quiet while the command line counts: their loggers (fake tensors log every
failing op at length) and their warnings are silenced unless ``--debug``, so that a mistake
ends in our one ``error:`` line. flopmeter's own notes (:class:`FlopmeterNote` warnings
from the library) are printed as ``note:`` lines, once each; the user's own code's warnings
show as Python shows them, once per place."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

from ..errors import FlopmeterNote


_QUIET = ("torch", "transformers", "timm")     # libraries whose loggers speak during a count


@contextlib.contextmanager
def quiet_torch(debug: bool = False):
    with _quiet_loggers(debug), warnings.catch_warnings():
        if not sys.warnoptions:                  # -W and PYTHONWARNINGS win; otherwise each warning once per place
            warnings.simplefilter("default")
        warnings.filterwarnings("always", category=FlopmeterNote)      # deduplicated by text below
        warnings.showwarning = _Shower(warnings.showwarning, debug)
        yield


class _Shower:
    """``warnings.showwarning`` for the duration of a count: notes as ``note:`` lines, the
    user's warnings through the previous ``showwarning``, library warnings only with --debug."""

    def __init__(self, previous, debug: bool):
        self.previous, self.debug, self.notes = previous, debug, set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FlopmeterNote):
            text = str(message)
            if text not in self.notes:
                self.notes.add(text)
                print(f"note: {text}", file=sys.stderr)
        elif self.debug or not _library(filename):
            self.previous(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _quiet_loggers(debug: bool):
    """The libraries' loggers off for the duration, put back as they were after. transformers
    sets its level when it is first imported, which may happen during the count (an hf: model):
    its documented TRANSFORMERS_VERBOSITY variable keeps that import quiet too."""
    if debug:
        yield
        return
    loggers = [logging.getLogger(root) for root in _QUIET] + [
        lg for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and name.startswith(tuple(f"{root}." for root in _QUIET))]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    importing = "transformers" not in sys.modules
    verbosity = os.environ.get("TRANSFORMERS_VERBOSITY")
    if importing:
        os.environ["TRANSFORMERS_VERBOSITY"] = "critical"
    for root in _QUIET:
        logging.getLogger(root).setLevel(logging.CRITICAL + 1)
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        if importing:
            if verbosity is None:
                os.environ.pop("TRANSFORMERS_VERBOSITY", None)
            else:
                os.environ["TRANSFORMERS_VERBOSITY"] = verbosity
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
        if importing and "transformers" in sys.modules:    # imported here: the level it takes without us
            level = logging.getLevelName((verbosity or "warning").upper())
            logging.getLogger("transformers").setLevel(level if isinstance(level, int) else logging.WARNING)


def _library(filename: str) -> bool:
    parts = set(Path(filename).parts)
    return bool(parts & {"site-packages", "dist-packages", "flopmeter"}) or filename.startswith("<frozen")

"""``torch.compile``d modules: counted through the original module, never through dynamo.

A count runs the forward on fake tensors under its own dispatch mode; dynamo would trace and
compile that run (and crashes under ``FakeTensorMode`` on some versions). So a model that is
an ``OptimizedModule`` is counted as the module it wraps (``_orig_mod``: same parameters, same
forward), and a model holding compiled submodules is run with ``torch.compiler``'s
``force_eager`` stance, which makes them call their original forward. Either way a
:class:`FlopmeterNote` says so (the CLI prints it as a ``note:`` line)."""

from __future__ import annotations

import contextlib
import sys
import warnings

import torch
from torch import nn

from ..errors import FlopmeterNote
from .walk import ModelWalk


def _optimized_type():
    module = sys.modules.get("torch._dynamo.eval_frame")      # not imported: nothing was compiled
    return getattr(module, "OptimizedModule", None) if module is not None else None


def original(model):
    """The module a compiled ``model`` wraps (``model`` itself when it is not compiled)."""
    optimized = _optimized_type()
    return model._orig_mod if optimized is not None and isinstance(model, optimized) else model


@contextlib.contextmanager
def compiled_counted_eagerly(model: nn.Module):
    """Yield (the module to count, its :class:`.walk.ModelWalk`): ``model``, or the original
    behind a compiled ``model``; (``model``, None) when it is not a module."""
    if not isinstance(model, nn.Module):
        yield model, None
        return
    optimized = _optimized_type()
    if optimized is not None and isinstance(model, optimized):
        model = model._orig_mod
        warnings.warn("the model is torch.compile'd; counted the original module it wraps (same "
                      "parameters and forward; the compiled kernels may fuse ops but do the same arithmetic)",
                      FlopmeterNote, stacklevel=5)
    walk = ModelWalk(model)
    inner = [name for name, m in walk.modules() if isinstance(m, optimized)] if optimized is not None else []
    if not inner:
        yield model, walk
        return
    warnings.warn(f"{len(inner)} submodule(s) are torch.compile'd ({', '.join(repr(n) for n in inner[:3])}"
                  f"{', …' if len(inner) > 3 else ''}); counted their original forward (eager), listed under "
                  "'_orig_mod'", FlopmeterNote, stacklevel=5)
    with torch.compiler.set_stance("force_eager"):
        yield model, walk

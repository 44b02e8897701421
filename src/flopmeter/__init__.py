"""flopmeter: exact parameters, MACs, FLOPs and bytes of PyTorch models, per module and op.

>>> import torch, flopmeter
>>> report = flopmeter.count(torch.nn.Linear(10, 20), input_shape=(1, 10))
>>> report.macs, report.flops
(200, 400)
"""

from __future__ import annotations

import importlib
import sys
import types

from .errors import (FlopmeterError, InputError, MissingDependencyError, ModelForwardError, NoClosedFormError,
                     OptionsError, UnsupportedOpsError)

# The verbs and records load with PyTorch on first use, so that `import flopmeter` (and the
# command line's --help and --version) start without importing torch.
_LAZY = {
    "analyses.serving": ("Serving", "serve"),
    "api": ("Options", "count", "report_from_trace"),
    "bench": ("MeasureOptions", "Measurement", "measure"),
    "cost": ("CONVENTIONS", "Convention", "Cost"),
    "explain": ("Explanation", "explain"),
    "formulas": ("REGISTRY",),
    "mfu": ("StepCounter", "StepFlops", "training_flops"),
    "frontends.onnx_file": ("count_onnx",),
    "report": ("ModuleNode", "OpRow", "Report"),
    "analyses.parallel": ("Plan", "PlanConfig", "plan"),
}
_NAMES = {name for names in _LAZY.values() for name in names}

__all__ = [
    "__version__", "Convention", "CONVENTIONS", "Cost", "count", "count_onnx", "explain", "Explanation",
    "FlopmeterError", "InputError", "measure", "Measurement", "MeasureOptions", "MissingDependencyError",
    "ModelForwardError", "ModuleNode", "NoClosedFormError", "OpRow", "Options", "OptionsError", "Plan", "plan",
    "PlanConfig", "REGISTRY", "Report", "report_from_trace", "serve", "Serving", "StepCounter", "StepFlops",
    "training_flops", "UnsupportedOpsError",
]


def _version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("flopmeter")
    except PackageNotFoundError:          # run from a source tree that was never installed
        return "0+unknown"


def _load() -> None:
    namespace = globals()
    for module, names in _LAZY.items():
        loaded = importlib.import_module(f"{__name__}.{module}")
        for name in names:
            namespace[name] = getattr(loaded, name)


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load()                               # everything at once, as an eager import would: submodules included
    if name in globals():
        return globals()[name]
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package: a submodule's first import does not hide the function it shares a name with
    (``flopmeter.explain`` stays the function once ``flopmeter/explain.py`` is loaded)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

"""Drop-in replacements for the call shapes of other counters, returning flopmeter's numbers.

=====================================  ==========================================================
original                               here
=====================================  ==========================================================
``ptflops.get_model_complexity_info``  :func:`get_model_complexity_info` → ``(macs, params)``
``thop.profile``                       :func:`profile` → ``(macs: float, params: float)``
``torchprofile.profile_macs``          :func:`profile_macs` → ``int``
``fvcore.nn.FlopCountAnalysis``        :class:`FlopCountAnalysis` (``.total()``, ``.by_module()``,
                                       ``.by_operator()``, ``.unsupported_ops()``, …)
=====================================  ==========================================================

Each takes the original's arguments and returns the original's types, with flopmeter's
numbers: MACs are multiply-accumulates inside dot products only (matmul, linear, conv,
attention), so BatchNorm, activations and pooling add none; parameters are unique tensors.
None of them prints unless the original printed (ptflops' ``print_per_layer_stat``), and
none of them changes the model. Where a tool counted differently, the README's
"Moving from …" sections say how and why.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Callable

import torch
from torch import nn

from .api import Options, count
from .errors import InputError, OptionsError
from .report import Report


def _as_args(inputs: Any) -> tuple:
    """A tensor → (tensor,); a tuple/list of inputs → tuple."""
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    return (inputs,)


# -- ptflops -----------------------------------------------------------------------------------

def _flops_to_string(macs: int, units: str | None = None, precision: int = 2) -> str:
    """ptflops' MAC formatting ('4.09 GMac')."""
    scales = {"GMac": 10 ** 9, "MMac": 10 ** 6, "KMac": 10 ** 3}
    if units is None:
        units = next((u for u, s in scales.items() if macs // s > 0), "Mac")
    if units not in scales:
        return f"{macs} Mac"
    return f"{round(macs / scales[units], precision)} {units}"


def _params_to_string(params: int, units: str | None = None, precision: int = 2) -> str:
    """ptflops' parameter formatting ('25.56 M')."""
    if units is None:
        if params // 10 ** 6 > 0:
            return f"{round(params / 10 ** 6, precision)} M"
        if params // 10 ** 3 > 0:
            return f"{round(params / 10 ** 3, precision)} k"
        return str(params)
    scales = {"M": 10 ** 6, "K": 10 ** 3, "B": 10 ** 9}
    if units not in scales:
        return str(params)
    return f"{round(params / scales[units], precision)} {units}"


def get_model_complexity_info(model: nn.Module, input_res: tuple, print_per_layer_stat: bool = True,
                              as_strings: bool = True, input_constructor: Callable | None = None,
                              ost=None, verbose: bool = False, ignore_modules=(), custom_modules_hooks=None,
                              backend: Any = "pytorch", flops_units: str | None = None,
                              param_units: str | None = None, output_precision: int = 2,
                              backend_specific_config: dict | None = None):
    """ptflops' call shape: ``(macs, params)`` as ints, or as strings ('4.09 GMac', '25.56 M').

    ``input_res`` is the input shape without the batch dimension (a batch of 1 is added);
    ``input_constructor(input_res)`` may build the inputs instead (a dict → keyword inputs).
    ``print_per_layer_stat`` (default True, as in ptflops) writes the module tree to ``ost``
    (stdout by default). ``backend`` is accepted and ignored (one counter here);
    ``ignore_modules`` and ``custom_modules_hooks`` are refused, since flopmeter costs ops,
    not module classes (use ``Options(registry=…)``). Unlike ptflops, a failing forward
    raises instead of returning ``(None, None)``.
    """
    if not isinstance(input_res, tuple) or len(input_res) < 1:
        raise InputError(f"input_res must be a non-empty tuple such as (3, 224, 224), got {input_res!r}",
                         hint="for example input_res=(3, 224, 224), without the batch dimension")
    if ignore_modules or custom_modules_hooks:
        raise OptionsError("ignore_modules and custom_modules_hooks are not supported: flopmeter costs aten ops",
                           hint="override op formulas with Options(registry=flopmeter.REGISTRY.copy())")
    if input_constructor is not None:
        batch = input_constructor(input_res)
        report = count(model, kwargs=batch) if isinstance(batch, dict) else count(model, batch)
    else:
        report = count(model, input_shape=(1, *input_res))
    if print_per_layer_stat:
        from .render.text import to_markdown
        print(to_markdown(report, view="tree", depth=None), file=ost or sys.stdout)
    macs, params = report.macs, report.params.count
    if as_strings:
        return (_flops_to_string(macs, flops_units, output_precision),
                _params_to_string(params, param_units, output_precision))
    return macs, params


# -- thop ---------------------------------------------------------------------------------------

def _layer_info(node) -> dict:
    return {c.name: (float(c.total.macs), float(c.params_total), _layer_info(c)) for c in node.children}


def profile(model: nn.Module, inputs, custom_ops: dict | None = None, verbose: bool = True,
            ret_layer_info: bool = False, report_missing: bool = False):
    """thop's call shape: ``profile(model, inputs) -> (macs, params)``, both floats.

    ``inputs`` is a tuple of positional inputs. ``ret_layer_info=True`` adds thop's nested
    ``{child: (macs, params, {grandchild: …})}``. ``custom_ops`` (module class → hook that
    writes onto the module) is refused: flopmeter never writes onto a model. Nothing is
    printed (thop's ``[INFO] Register …`` lines have no counterpart).
    """
    if custom_ops:
        raise OptionsError("custom_ops is not supported: flopmeter costs aten ops, not module classes",
                           hint="override op formulas with Options(registry=flopmeter.REGISTRY.copy())")
    report = count(model, *_as_args(inputs))
    macs, params = float(report.macs), float(report.params.count)
    if ret_layer_info:
        return macs, params, _layer_info(report.root)
    return macs, params


# -- torchprofile -------------------------------------------------------------------------------

def profile_macs(model: nn.Module, args: Any = (), kwargs: dict | None = None,
                 reduction: Callable | None = sum):
    """torchprofile's call shape: total MACs as an int.

    ``reduction=None`` gives the per-op breakdown as a dict; its keys are
    ``"module/op#index"`` strings (torchprofile's keys are its own graph nodes).
    """
    report = count(model, *_as_args(args), kwargs=kwargs)
    per_op = {f"{row.module or '(root)'}/{row.op}#{i}": row.cost.macs
              for i, row in enumerate(report.ops) if row.cost.macs}
    if reduction is not None:
        return reduction(per_op.values())
    return per_op


# -- fvcore -------------------------------------------------------------------------------------

_FVCORE_NAMES = {"aten.convolution": "conv", "aten._convolution": "conv", "aten.conv1d": "conv",
                 "aten.conv2d": "conv", "aten.conv3d": "conv"}


def _short(op: str) -> str:
    return _FVCORE_NAMES.get(op, op.removeprefix("aten."))


class FlopCountAnalysis:
    """fvcore's ``FlopCountAnalysis(model, inputs)`` with flopmeter's numbers.

    fvcore calls one multiply-accumulate a "flop"; so do these methods: every number is
    MACs (flopmeter's ``mac`` convention). ``by_operator`` keys are op names without the
    ``aten.`` prefix (convolutions as ``conv``, as fvcore names them); ``unsupported_ops``
    lists ops flopmeter has no formula for, as ``aten::name`` like fvcore. The warning and
    tracer switches are accepted and return ``self`` (flopmeter logs nothing).
    """

    def __init__(self, model: nn.Module, inputs):
        self._model = model
        self._inputs = _as_args(inputs)
        self._report: Report | None = None

    @property
    def report(self) -> Report:
        """The full flopmeter :class:`Report` (counted once, on first use)."""
        if self._report is None:
            self._report = count(self._model, *self._inputs, options=Options(convention="mac"))
        return self._report

    def _rows(self, module_name: str):
        prefix = module_name + "."
        return [r for r in self.report.ops
                if not module_name or r.module == module_name or r.module.startswith(prefix)]

    def total(self, module_name: str = "") -> int:
        return self.report.module(module_name).total.macs

    def by_operator(self, module_name: str = "") -> Counter:
        out: Counter = Counter()
        for r in self._rows(module_name):
            if r.cost.macs:
                out[_short(r.op)] += r.cost.macs
        return out

    def by_module(self) -> Counter:
        return Counter({n.path: n.total.macs for n in self.report.modules()})

    def by_module_and_operator(self) -> dict[str, Counter]:
        return {n.path: self.by_operator(n.path) for n in self.report.modules()}

    def unsupported_ops(self, module_name: str = "") -> Counter:
        out: Counter = Counter()
        for r in self._rows(module_name):
            if r.status == "unsupported":
                out["aten::" + r.op.removeprefix("aten.")] += 1
        return out

    def uncalled_modules(self) -> set[str]:
        return {n.path for n in self.report.modules() if n.calls == 0}

    def unsupported_ops_warnings(self, enabled: bool) -> "FlopCountAnalysis":
        return self

    def uncalled_modules_warnings(self, enabled: bool) -> "FlopCountAnalysis":
        return self

    def tracer_warnings(self, mode: str) -> "FlopCountAnalysis":
        return self

    def ancestor_mode(self, mode: str) -> "FlopCountAnalysis":
        return self

    def set_op_handle(self, *args, **kwargs) -> "FlopCountAnalysis":
        raise OptionsError("set_op_handle takes fvcore's JIT handles, which flopmeter does not use",
                           hint="override op formulas with Options(registry=flopmeter.REGISTRY.copy())")


__all__ = ["FlopCountAnalysis", "get_model_complexity_info", "profile", "profile_macs"]

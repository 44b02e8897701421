"""Drop-in replacements for the call shapes of other counters, returning flopmeter's numbers.

=====================================  ==========================================================
original                               here
=====================================  ==========================================================
``ptflops.get_model_complexity_info``  :func:`get_model_complexity_info` → ``(macs, params)``
``thop.profile``                       :func:`profile` → ``(macs: float, params: float)``
``thop.clever_format``                 :func:`clever_format` → ``str`` or a tuple of them
``torchprofile.profile_macs``          :func:`profile_macs` → ``int``
``fvcore.nn.FlopCountAnalysis``        :class:`FlopCountAnalysis` (``.total()``, ``.by_module()``,
                                       ``.by_operator()``, ``.unsupported_ops()``, …)
``fvcore.nn.flop_count_table``         :func:`flop_count_table` → ``str`` (fvcore's Markdown table)
``fvcore.nn.parameter_count``          :func:`parameter_count` → ``defaultdict(int)``
``fvcore.nn.parameter_count_table``    :func:`parameter_count_table` → ``str``
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
from collections import Counter, defaultdict
from collections.abc import Iterable
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

def clever_format(nums, format: str = "%.2f"):
    """thop's ``clever_format``: numbers as text with a T/G/M/K suffix (B below a thousand);
    one number gives a string, several a tuple."""
    if not isinstance(nums, Iterable):
        nums = [nums]
    out = []
    for num in nums:
        scale, suffix = next(((s, u) for s, u in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")) if num > s),
                             (1, "B"))
        out.append(format % (num / scale if scale != 1 else num) + suffix)
    return out[0] if len(out) == 1 else (*out,)


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


def parameter_count(model: nn.Module) -> defaultdict:
    """fvcore's ``parameter_count``: parameter name or module name → number of elements (``""``:
    the whole model), over ``named_parameters()`` (shared tensors once)."""
    counts: defaultdict = defaultdict(int)
    for name, p in model.named_parameters():
        parts = name.split(".")
        for k in range(len(parts) + 1):
            counts[".".join(parts[:k])] += p.numel()
    return counts


def _fvcore_size(x: int, hide_zero: bool = False) -> str:
    """fvcore's number format: three decimals, trailing zeros dropped, K/M/G/T/P past 100 of each."""
    if hide_zero and x == 0:
        return ""
    for limit, scale, suffix in ((1e14, 1e15, "P"), (1e11, 1e12, "T"), (1e8, 1e9, "G"), (1e5, 1e6, "M"),
                                 (1e2, 1e3, "K")):
        if abs(x) > limit:
            return f"{x / scale:.3f}".rstrip("0").rstrip(".") + suffix
    return str(x)


def _pipe_table(rows: list[list[str]], headers: list[str]) -> str:
    """A left-aligned Markdown pipe table as fvcore prints it through tabulate: every column at
    least two wider than its header, and cells stripped (current tabulate ignores the
    ``PRESERVE_WHITESPACE`` switch fvcore sets, so its indentation does not show)."""
    rows = [[c.strip() for c in r] for r in rows]
    widths = [max(len(h) + 2, *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join(":" + "-" * (w + 1) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def _children(name: str, stats: dict) -> list[str]:
    prefix = name + ("." if name else "")
    return [m for m in stats if m and m.count(".") == prefix.count(".") and m.startswith(prefix)]


def _without_zero_rows(stats: dict) -> dict:
    """fvcore's pruning: a module whose figures are all zero goes, unless a child of it stays."""
    out: dict = {}

    def keep(name: str) -> None:
        trivial = True
        for child in _children(name, stats):
            keep(child)
            trivial &= child not in out
        if any(v != 0 for v in stats[name].values()) or name == "" or not trivial:
            out[name] = dict(stats[name])
    keep("")
    return out


def _fastforward(name: str, stats: dict) -> tuple[str, dict]:
    """fvcore folds a module into its only child when their figures agree (one row for both)."""
    children = _children(name, stats)
    if len(children) != 1:
        return name, stats[name]
    child = children[0]
    a, b = stats[name], stats[child]
    if set(a) != set(b) or any(a[k] != b[k] and a[k] and b[k] for k in a):
        return name, stats[name]
    stats[child] = {k: a[k] or b[k] for k in a}
    return _fastforward(child, stats)


def _stats_table(stats: dict, columns: list[str], max_depth: int) -> str:
    rows: list[list[str]] = []

    def row(name: str, figures: dict, level: int) -> list[str]:
        indent = " " * level
        return [indent + name] + [indent + figures[c] if c in figures else "" for c in columns]

    def fill(level: int, prefix: str) -> None:
        if level > max_depth:
            return
        for name in list(stats):
            if name and name.count(".") == prefix.count(".") and name.startswith(prefix):
                name, figures = _fastforward(name, stats)
                shown = name[len(root_prefix):] if root_prefix and name.startswith(root_prefix) else name
                rows.append(row(shown, figures, level))
                fill(level + 1, name + ".")
    root, figures = _fastforward("", stats)
    rows.append(row(root or "model", figures, 0))
    root_prefix = root + ("." if root else "")
    fill(1, root_prefix)
    return _pipe_table(rows, ["module", *columns])


def flop_count_table(flops: FlopCountAnalysis, max_depth: int = 3, activations=None,
                     show_param_shapes: bool = True) -> str:
    """fvcore's ``flop_count_table``: parameters (or shapes) and "flops" (MACs, as fvcore counts
    them) per module to ``max_depth``, in fvcore's Markdown layout, with flopmeter's numbers."""
    if activations is not None:
        raise OptionsError("flop_count_table(activations=...) takes fvcore's ActivationCountAnalysis, which "
                           "flopmeter does not provide", hint="leave activations out; flopmeter.count(model, x, "
                           "options=flopmeter.Options(memory=True)) gives the activation memory")
    params_header = "#parameters" + (" or shape" if show_param_shapes else "")
    model = flops._model
    stats: dict = defaultdict(dict)
    for header, figures in ((params_header, dict(parameter_count(model))), ("#flops", flops.by_module())):
        for module, value in figures.items():
            stats[module][header] = value
    stats = _without_zero_rows(dict(stats))
    stats = {m: {k: _fvcore_size(v) for k, v in figures.items()} for m, figures in stats.items()}
    for module in flops.uncalled_modules() & stats.keys():
        stats[module]["#flops"] = ""
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    for module in [m for m in stats if m in shapes]:
        if show_param_shapes:
            stats[module][params_header] = str(shapes[module])
        else:
            del stats[module]
    return _stats_table(stats, [params_header, "#flops"], max_depth)


def parameter_count_table(model: nn.Module, max_depth: int = 3) -> str:
    """fvcore's ``parameter_count_table``: parameters per module (shapes for parameters) to
    ``max_depth``, in fvcore's Markdown layout."""
    counts = parameter_count(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}

    def size(x: int) -> str:          # this table's own rounding in fvcore: one decimal
        for limit, scale, suffix in ((1e8, 1e9, "G"), (1e5, 1e6, "M"), (1e2, 1e3, "K")):
            if x > limit:
                return f"{x / scale:.1f}{suffix}"
        return str(x)
    rows = [["model", size(counts.pop(""))]]

    def fill(level: int, prefix: str) -> None:
        if level >= max_depth:
            return
        for name, v in counts.items():
            if name.count(".") == level and name.startswith(prefix):
                indent = " " * (level + 1)
                if name in shapes:
                    rows.append([indent + name, indent + str(shapes[name])])
                else:
                    rows.append([indent + name, indent + size(v)])
                    fill(level + 1, name + ".")
    fill(0, "")
    return _pipe_table(rows, ["name", "#elements or shape"])


__all__ = ["FlopCountAnalysis", "clever_format", "flop_count_table", "get_model_complexity_info", "parameter_count",
           "parameter_count_table", "profile", "profile_macs"]

"""The public entry point: ``count(model, *inputs, options=Options(...)) -> Report``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .cost import get_convention
from .errors import OptionsError, expect_type
from .formulas import Registry
from .formulas.attention import check_causal
from .frontends.keras import KerasView, as_torch_module, is_keras
from .report import Report, build_report
from .trace import Trace, record
from .trace.lazy import materialised
from .kernels import cuda_target, is_named_cuda, split as split_device
from .trace.run import MODES, gc_paused, model_device, normalise_input_shape
from .trace.checks import check_device
from .trace.compiled import compiled_counted_eagerly
from .trace.training import TrainSpec


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Options:
    """How to count.

    - ``convention``: how FLOPs are reported: ``dot`` (2×MACs), ``all``, ``exact`` or ``mac``;
      the report keeps primitive counts, so ``report.flops_in(other)`` needs no new run.
    - ``mode``: ``fake`` (default; no weights touched or needed, works for meta-device and
      larger-than-memory models) or ``real`` (runs the real kernels; identical counts).
    - ``strict``: raise :class:`UnsupportedOpsError` when any executed op has no formula.
    - ``inference``: run under ``torch.no_grad()`` (default), as inference does; ``False``
      keeps autograd on (some PyTorch fast paths are only taken without grad).
    - ``device``: the device the (fake) run pretends to be on; default: the model's device,
      or ``cpu`` for a model on the meta device. ``"cuda:H100"`` (a name from the device
      table) runs as that GPU: its attention kernels, dropout's fused mask
      (:mod:`flopmeter.kernels`); plain ``"cuda"`` takes this machine's GPU's, or H100 SXM's
      without one, as ``report.kernels`` says.
    - ``registry``: a copy of ``flopmeter.formulas.REGISTRY`` with your own formulas.
    - ``causal``: how attention under a causal mask is counted: ``full`` (default; the whole
      score matrix, as dense kernels compute it) or ``exact`` (only the unmasked pairs).
    - ``memory``: also analyse memory (``report.memory``: weights by format, the live-bytes
      timeline and its peak, the KV cache); see :mod:`flopmeter.memory`.
    - ``training``: count one training step instead of an inference forward: the forward with
      autograd on and the (shadow) model in train mode, a ``loss`` (``"sum"`` of the outputs,
      ``"cross-entropy"`` against class 0, or ``fn(output) -> scalar``), ``backward()``, and an
      ``optimizer`` step (``"sgd"``, ``"sgd-momentum"``, ``"adam"``, ``"adamw"``; None: none).
      ``report.by_phase`` and each module's ``by_phase`` split the cost; ``report.training``
      holds the step's memory (saved for backward, gradients, optimizer state, peak).
    - ``autocast``: ``"bf16"`` or ``"fp16"``: the forward (and a training step's loss) under
      ``torch.autocast``; a training step's memory shows the weight copies it makes.
    - ``master_weights``: ``"fp32"``: mixed precision with 16-bit weights — the optimizer steps a
      float32 master copy of each 16-bit trainable weight (its state in float32) and copies it
      back; None or ``"none"`` (default): the optimizer updates the weights in their own dtype.
    """

    convention: str = "dot"
    mode: str = "fake"
    strict: bool = False
    inference: bool = True
    device: str | None = None
    registry: Registry | None = None
    causal: str = "full"
    memory: bool = False
    autocast: str | None = None
    training: bool = False
    loss: Any = "sum"
    optimizer: str | None = None
    master_weights: str | None = None

    def __post_init__(self):
        if self.master_weights == "none":
            object.__setattr__(self, "master_weights", None)
        self._check_types()
        get_convention(self.convention)   # raises OptionsError with a suggestion
        if self.mode not in MODES:
            raise OptionsError(f"unknown mode '{self.mode}'", hint=f"choose one of: {', '.join(MODES)}")
        check_causal(self.causal)
        if is_named_cuda(self.device):
            if self.mode == "real":
                raise OptionsError(f"device '{self.device}' names a GPU to count as; real mode runs on this "
                                   "machine's own device", hint="use mode='fake' (the default), or device='cuda'")
            cuda_target(self.device)          # an unknown name fails here, with close matches
            check_device("cuda", self.mode)
        else:
            check_device(self.device, self.mode)
        self.train_spec()           # checks loss and optimizer
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise OptionsError(f"unknown autocast dtype '{self.autocast}'", hint=f"choose one of: {', '.join(AUTOCAST)}")

    def _check_types(self) -> None:
        """Each field's type, so a wrong one is named here rather than failing deep inside a count."""
        for name in ("convention", "mode", "causal"):
            expect_type(getattr(self, name), str, f"Options.{name}", "a string")
        for name in ("strict", "inference", "memory", "training"):
            expect_type(getattr(self, name), bool, f"Options.{name}", "True or False")
        expect_type(self.device, (str, torch.device, type(None)), "Options.device",
                    "a device name, a torch.device or None")
        for name in ("autocast", "optimizer", "master_weights"):
            expect_type(getattr(self, name), (str, type(None)), f"Options.{name}", "a string or None")
        expect_type(self.registry, (Registry, type(None)), "Options.registry",
                    "a flopmeter.formulas.Registry or None", hint="use flopmeter.formulas.REGISTRY.copy() "
                                                                   "and register your formulas on it")
        if not (isinstance(self.loss, str) or callable(self.loss)):
            expect_type(self.loss, str, "Options.loss", "a loss name or a function of the output")

    def train_spec(self) -> TrainSpec | None:
        if not self.training:
            if self.master_weights:
                raise OptionsError("master weights belong to a training step's optimizer",
                                   hint="add training=True and an optimizer, or leave master_weights out")
            TrainSpec(loss=self.loss, optimizer=self.optimizer)          # checks the names
            return None
        return TrainSpec(loss=self.loss, optimizer=self.optimizer, master_weights=self.master_weights)


def count(model: nn.Module, *args: Any, kwargs: dict | None = None, input_shape=None,
          options: Options | None = None) -> Report:
    """Count parameters, MACs, FLOPs and bytes of one forward of ``model``.

    Give example inputs as positional ``args`` (tensors, or nested lists/tuples/dicts of
    them) and/or ``kwargs``, or ``input_shape=(1, 3, 224, 224)`` (several inputs: a list
    of shapes) for float inputs in the model's dtype. In fake mode (the default) the
    inputs' values are never read. The model is left exactly as it was.
    """
    return run(model, args, kwargs, input_shape, _options(options, "count"))[1]


def _options(options, where: str) -> "Options":
    """``options`` checked at a public entry point: an :class:`Options` or None (the defaults)."""
    if options is None:
        return Options()
    expect_type(options, Options, f"{where}(options=…)", "a flopmeter.Options or None",
                hint="e.g. options=flopmeter.Options(mode='real')")
    return options


def check_model(model, where: str) -> None:
    """The model of a public entry point: a torch.nn.Module (or a Keras 3 model)."""
    if not isinstance(model, nn.Module) and not is_keras(model):
        expect_type(model, nn.Module, f"{where}(model)", "a torch.nn.Module",
                    hint="pass the module itself, e.g. torchvision.models.resnet18()")


@gc_paused
def run(model: nn.Module, args: tuple, kwargs: dict | None, input_shape, options: Options, *,
        module_inputs: bool = False, training: TrainSpec | None = None) -> tuple[Trace, Report]:
    """Record one forward and cost it (with a copy of the registry): the Trace and its Report.
    ``module_inputs`` also keeps what ``explain`` needs: each module call's inputs and the
    configuration of the standard layers. ``training``: the training step to record, in place
    of ``options.train_spec()`` (one with ``shards``: :mod:`flopmeter.mfu` on an FSDP2 model).
    The cyclic garbage collector is paused throughout, as
    for the recording (:mod:`.trace.run`): the whole count allocates, and a collection started by
    the count's own allocations would sweep the model's heap (a second on a model of 80,000
    modules), not garbage."""
    check_model(model, "count")
    model = as_torch_module(model)     # a Keras 3 model: a view with its layers' names
    config = None
    if module_inputs:
        from .layers.standin import layer_config as config
    with compiled_counted_eagerly(model) as (model, walk):    # the module behind torch.compile; one walk of it
        model = materialised(model, args, kwargs, normalise_input_shape(input_shape), options.mode, walk)   # lazy modules
        device, kernels = kernel_target(model, options)
        trace = record(model, args, kwargs, input_shape=input_shape, mode=options.mode, device=device,
                       inference=options.inference, module_inputs=module_inputs, module_config=config,
                       training=training if training is not None else options.train_spec(),
                       autocast=AUTOCAST.get(options.autocast), walk=walk, kernels=kernels)
    if isinstance(model, KerasView):
        model.finish_trace(trace)
    trace.options.update(convention=options.convention, causal=options.causal, strict=options.strict)
    report = build_report(trace, registry=options.registry, convention=options.convention,
                          strict=options.strict, causal=options.causal)
    if options.memory:
        from .memory import analyse
        report.memory = analyse(report)
    if options.memory or options.training:
        from .analyses.assumptions import assumptions
        report.assumptions = assumptions(report)
    return trace, report


def kernel_target(model: nn.Module, options: Options):
    """(the device to record on, the CUDA kernel target of a fake run on cuda, or None)."""
    if options.mode != "fake":
        return options.device, None
    device, target = split_device(options.device)
    if device is None:                    # the model's own device
        found = model_device(model)
        if found is not None and found.type == "cuda":
            target = cuda_target(str(found))
    return device, target


def report_from_trace(trace: Trace, options: Options | None = None) -> Report:
    """The Report of a recorded (or loaded) trace, under ``options`` (default: those it was
    recorded with)."""
    expect_type(trace, Trace, "report_from_trace(trace)", "a flopmeter Trace",
                hint="load one with flopmeter.trace.io.load_trace(path), or take report.trace of a Report")
    if options is not None:
        options = _options(options, "report_from_trace")
    if options is None:
        opts = trace.options
        options = Options(convention=opts.get("convention", "dot"), causal=opts.get("causal", "full"),
                          strict=opts.get("strict", False))
    report = build_report(trace, registry=options.registry, convention=options.convention, strict=options.strict,
                          causal=options.causal)
    if trace.options.get("training"):                  # a training step's memory says its assumptions, as count's
        from .analyses.assumptions import assumptions
        report.assumptions = assumptions(report)
    return report


__all__ = ["Options", "count", "report_from_trace"]

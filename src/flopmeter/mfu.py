"""Exact FLOPs of one training step, and model / hardware FLOP utilisation from them.

:func:`training_flops` traces one training step of the model on fake tensors (forward, loss,
backward, recomputation by ``torch.utils.checkpoint``, optimizer step; see
:mod:`flopmeter.trace.training`) and returns a :class:`StepFlops`: the step's FLOPs by phase
under a named convention (``dot``, 2 × MACs, is the one MFU is quoted in).

:class:`StepCounter` holds the cache the training-loop integrations use: one traced step per
input signature (shapes and dtypes of the batch), bounded, least recently used first out; and,
once :meth:`StepCounter.fit_lengths` has fitted the step's cost as an exact polynomial in the
sequence length, the FLOPs of a batch of any length without a new trace.

:func:`resolve_peak` finds the dense peak throughput the utilisation divides by: ``peak_flops``
as given, or the row of flopmeter's device table (``devices.json``) for the device and
dtype. :func:`utilisation` turns a step's FLOPs and its measured time into achieved FLOP/s,
MFU (model FLOPs: the step without recomputation) and HFU (hardware FLOPs: with it).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .errors import InputError, OptionsError

PHASES = ("forward", "backward", "recompute", "optimizer")
_WRAPPERS = ("DistributedDataParallel", "FullyShardedDataParallel")


# -- the step's FLOPs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepFlops:
    """The FLOPs of one training step, by phase, under ``convention``; ``signature``: the
    shapes and dtypes of the batch it was traced at (or fitted for); ``unsupported``: ops the
    step ran that have no formula (listed, not counted as zero: the figures are then low)."""

    forward: int
    backward: int
    recompute: int
    optimizer: int
    convention: str
    signature: Any
    unsupported: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.recompute + self.optimizer

    @property
    def model_flops(self) -> int:
        """The step's FLOPs without recomputation: the numerator of MFU."""
        return self.total - self.recompute

    @property
    def hardware_flops(self) -> int:
        """The step's FLOPs with recomputation: the numerator of HFU."""
        return self.total

    @property
    def by_phase(self) -> dict[str, int]:
        return {p: getattr(self, p) for p in PHASES}


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose step is counted: behind ``torch.compile`` (``_orig_mod``) and behind
    ``DistributedDataParallel`` / ``FullyShardedDataParallel`` (``.module``, whose forward a rank
    runs on its local batch). An FSDP2 (``fully_shard``) model wraps nothing and is returned
    as it is; :func:`training_flops` counts it through :func:`flopmeter.trace.fsdp.unsharded`."""
    for _ in range(8):
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module) and type(model).__name__ in _WRAPPERS:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
    return model


def signature(batch: Any) -> Any:
    """A hashable key of a batch: each tensor's shape and dtype, the structure around them, and
    plain values (numbers, strings, None) as they are."""
    if isinstance(batch, torch.Tensor):
        return ("tensor", tuple(batch.shape), str(batch.dtype))
    if isinstance(batch, Mapping):
        return ("dict", tuple((str(k), signature(v)) for k, v in batch.items()))
    if isinstance(batch, (list, tuple)):
        return (type(batch).__name__, tuple(signature(v) for v in batch))
    if batch is None or isinstance(batch, (bool, int, float, str)):
        return ("value", batch)
    return ("object", type(batch).__qualname__)


def split_inputs(batch: Any) -> tuple[tuple, dict]:
    """How a batch is passed to the model: a dict as keyword arguments, a tuple or list as
    positional arguments, anything else as the one positional argument."""
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, (list, tuple)):
        return tuple(batch), {}
    return (batch,), {}


def model_loss(output: Any) -> torch.Tensor:
    """The loss a model returns (``output.loss`` / ``output["loss"]``, as Hugging Face models do
    when given labels); otherwise the sum of the float outputs that need a gradient."""
    from .trace.training import make_loss

    value = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value
    return make_loss("sum", output)


def _loss(loss: Any):
    return model_loss if loss == "auto" else loss


def _check_checkpointing(checkpointing: bool | None, step: StepFlops) -> None:
    if checkpointing is True and step.recompute == 0:
        raise OptionsError("checkpointing=True, but the traced step recomputes nothing",
                           hint="enable it on the model first (e.g. model.gradient_checkpointing_enable()), "
                                "or wrap blocks in torch.utils.checkpoint.checkpoint")
    if checkpointing is False and step.recompute:
        raise OptionsError(f"checkpointing=False, but the traced step recomputes {step.recompute:,} FLOPs",
                           hint="turn checkpointing off on the model, or pass checkpointing=None")


def training_flops(model: nn.Module, example_batch: Any, *, optimizer: str | None = "adamw", loss: Any = "auto",
                   checkpointing: bool | None = None, autocast: str | None = None, convention: str = "dot",
                   device: str | None = None) -> StepFlops:
    """The exact FLOPs of one training step of ``model`` on a batch like ``example_batch``.

    The step is flopmeter's traced training step (``count(..., Options(training=True))``) on
    fake tensors: the model is not run, moved or changed, and the batch's values are not read.
    ``example_batch``: a dict (keyword arguments), a tuple or list (positional arguments) or a
    tensor. ``loss``: ``"auto"`` (the model's own ``loss`` output, else the sum of its float
    outputs), ``"sum"``, ``"cross-entropy"`` or ``fn(output) -> scalar``. ``optimizer``: ``"sgd"``,
    ``"sgd-momentum"``, ``"adam"``, ``"adamw"`` or None. ``checkpointing``: None counts whatever
    recomputation the model does; True / False also check that it does / does not recompute.
    ``autocast``: ``"bf16"`` or ``"fp16"``. ``device``: the device the fake step pretends to be
    on (default: the model's). A ``torch.compile``d model is counted through its original
    module, a DDP / FSDP one through ``.module`` (the rank's FLOPs for its local batch).

    An FSDP2 model (``fully_shard``, parameters sharded as DTensors in place) gives one rank's
    step on its local batch: forward, backward and recomputation of the unsharded model (each
    rank all-gathers the parameters and computes with them whole; in the dtype of a
    ``MixedPrecisionPolicy``'s ``param_dtype``), and the optimizer step on the rank's own shards
    only (each parameter at the shape of its ``to_local()``, as ``optimizer.step()`` on the
    DTensors updates them), which differs between ranks when a dimension does not divide
    evenly. The count runs on an unsharded stand-in (:func:`flopmeter.trace.fsdp.unsharded`):
    FSDP's hooks do not run, no collective is issued, the model and FSDP's state are unchanged.
    Count between steps (FSDP2 holds the sharded parameters then, as after ``optimizer.step()``).
    """
    from .api import Options, run
    from .trace.fsdp import unsharded

    target = unwrap(model)
    shards: tuple = ()
    stand_in = unsharded(target)
    if stand_in is not None:
        target, shards = stand_in.model, stand_in.shards
        device = device if device is not None else stand_in.device
    args, kwargs = split_inputs(example_batch)
    options = Options(convention=convention, training=True, inference=False, loss=_loss(loss),
                      optimizer=optimizer, autocast=autocast, device=device)
    spec = replace(options.train_spec(), shards=shards)
    report = run(target, args, kwargs, None, options, training=spec)[1]
    phases = report.by_phase
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise InputError(f"the traced step has phases flopmeter does not split: {', '.join(unknown)}")
    values = {p: phases[p].flops(convention) if p in phases else 0 for p in PHASES}
    step = StepFlops(**values, convention=convention, signature=signature(example_batch),
                     unsupported=tuple(sorted(report.unsupported)))
    _check_checkpointing(checkpointing, step)
    return step


# -- a cache per input signature, and the cost as a polynomial in the sequence length ---------------

@dataclass(frozen=True)
class LengthFit:
    """Each phase's FLOPs as an exact polynomial in the sequence length (``dim`` of every batch
    tensor whose size there was the template's length), checked at a length the fit never saw."""

    template: Any                                   # the batch's signature with the length replaced by None
    dim: int
    coefficients: dict[str, tuple[Fraction, ...]]   # phase → (c0, c1, …)
    sizes: tuple[int, ...]
    holdout: int
    convention: str
    unsupported: tuple[str, ...] = ()

    def __call__(self, length: int) -> dict[str, int]:
        from .scaling import evaluate

        out = {}
        for phase, coef in self.coefficients.items():
            value = evaluate(coef, length)
            if value.denominator != 1:
                raise InputError(f"the fitted {phase} FLOPs are not an integer at length {length}",
                                 hint="fit again over lengths that bracket it")
            out[phase] = int(value)
        return out

    def polynomial(self, phase: str = "total", variable: str = "T") -> str:
        from .scaling import Fit

        if phase == "total":
            width = max(len(c) for c in self.coefficients.values())
            coef = tuple(sum((c[k] if k < len(c) else Fraction(0)) for c in self.coefficients.values())
                         for k in range(width))
        else:
            coef = self.coefficients[phase]
        return Fit((), (), coef, None, None, variable).polynomial()


def _with_length(batch: Any, dim: int, old: int, new: int) -> Any:
    """The batch with every tensor whose size at ``dim`` is ``old`` resized to ``new`` (new
    tensors of the same dtype and device; in a fake count their values are never read)."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim > dim and batch.shape[dim] == old:
            shape = list(batch.shape)
            shape[dim] = new
            return torch.zeros(shape, dtype=batch.dtype, device=batch.device)
        return batch
    if isinstance(batch, Mapping):
        return {k: _with_length(v, dim, old, new) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_with_length(v, dim, old, new) for v in batch)
    return batch


def _template(sig: Any, dim: int) -> tuple[Any, int | None]:
    """The signature with the size at ``dim`` of every tensor of rank > dim blanked, and that
    size when all such tensors agree on it (None otherwise)."""
    lengths: set[int] = set()

    def walk(s):
        if s[0] == "tensor":
            shape = list(s[1])
            if len(shape) > dim:
                lengths.add(shape[dim])
                shape[dim] = None
            return ("tensor", tuple(shape), s[2])
        if s[0] == "dict":
            return ("dict", tuple((k, walk(v)) for k, v in s[1]))
        if s[0] in ("list", "tuple"):
            return (s[0], tuple(walk(v) for v in s[1]))
        return s
    t = walk(sig)
    return t, (lengths.pop() if len(lengths) == 1 else None)


@dataclass
class StepCounter:
    """The training-step FLOPs of one model, cached per input signature.

    ``flops(batch)`` traces one step per new signature (shapes and dtypes) and keeps the last
    ``maxsize``; after :meth:`fit_lengths`, a batch that differs from the fitted one only in its
    sequence length is costed from the exact polynomial, without a trace. The model is held, not
    changed; ``inputs`` maps a training batch to what the model is called with (default: the
    batch itself, see :func:`split_inputs`).
    """

    model: nn.Module
    optimizer: str | None = "adamw"
    loss: Any = "auto"
    checkpointing: bool | None = None
    autocast: str | None = None
    convention: str = "dot"
    device: str | None = None
    inputs: Callable[[Any], Any] | None = None
    maxsize: int = 32
    traces: int = field(default=0, init=False)     # how many steps were traced
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)
    _fit: LengthFit | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.maxsize, int) or self.maxsize < 1:
            raise OptionsError(f"maxsize must be a positive integer, got {self.maxsize!r}")

    def model_inputs(self, batch: Any) -> Any:
        return self.inputs(batch) if self.inputs is not None else batch

    def _trace(self, example: Any) -> StepFlops:
        self.traces += 1
        return training_flops(self.model, example, optimizer=self.optimizer, loss=self.loss,
                              checkpointing=self.checkpointing, autocast=self.autocast,
                              convention=self.convention, device=self.device)

    def flops(self, batch: Any) -> StepFlops:
        """The step's FLOPs for a training batch (after ``inputs``)."""
        example = self.model_inputs(batch)
        key = signature(example)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        step = self._from_fit(key)
        if step is None:
            step = self._trace(example)
        self._cache[key] = step
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return step

    def _from_fit(self, key: Any) -> StepFlops | None:
        fit = self._fit
        if fit is None:
            return None
        template, length = _template(key, fit.dim)
        if length is None or template != fit.template:
            return None
        return StepFlops(**fit(length), convention=self.convention, signature=key, unsupported=fit.unsupported)

    def fit_lengths(self, batch: Any, sizes: Sequence[int] = (16, 32, 64, 128), holdout: int = 48, *,
                    dim: int = 1) -> LengthFit:
        """Fit each phase's FLOPs as an exact polynomial in the sequence length: trace the step
        at each of ``sizes`` (every batch tensor whose size at ``dim`` equals the batch's length
        takes that length) and at ``holdout``, which the fit never sees and must reproduce
        exactly (flopmeter's divided-difference fit, :func:`flopmeter.scaling.fit`)."""
        from .scaling import fit

        example = self.model_inputs(batch)
        template, length = _template(signature(example), dim)
        if length is None:
            raise InputError(f"the batch's tensors do not share one size at dimension {dim}",
                             hint="give a batch whose token tensors all have the sequence length at that dimension")
        sizes = tuple(sorted(set(sizes)))
        if len(sizes) < 3 or holdout in sizes:
            raise InputError("a length fit needs at least 3 lengths and a check length not among them",
                             hint="for example sizes=(16, 32, 64, 128), holdout=48")
        counted = {n: self._trace(_with_length(example, dim, length, n)) for n in (*sizes, holdout)}
        coefficients = {}
        for phase in PHASES:
            f = fit(sizes, [getattr(counted[n], phase) for n in sizes],
                    (holdout, getattr(counted[holdout], phase)))
            if not f.exact:
                raise InputError(f"the step's {phase} FLOPs are not a polynomial in the length over {sizes}",
                                 hint="count each length (the counter caches per shape) instead of fitting")
            coefficients[phase] = f.coefficients
        unsupported = tuple(sorted({op for step in counted.values() for op in step.unsupported}))
        self._fit = LengthFit(template, dim, coefficients, sizes, holdout, self.convention, unsupported)
        return self._fit


def optimizer_name(optimizer: Any) -> str | None:
    """flopmeter's name of a torch optimizer (behind Lightning's and Accelerate's wrappers):
    ``sgd``, ``sgd-momentum``, ``adam`` or ``adamw``; None for None."""
    for _ in range(4):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        optimizer = inner
    if optimizer is None:
        return None
    if isinstance(optimizer, torch.optim.AdamW):
        return "adamw"
    if isinstance(optimizer, torch.optim.Adam):
        return "adam"
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd-momentum" if any(g.get("momentum", 0) for g in optimizer.param_groups) else "sgd"
    from .trace.training import OPTIMIZERS
    raise OptionsError(f"flopmeter cannot trace the optimizer {type(optimizer).__name__}",
                       hint=f"pass optimizer= one of {', '.join(OPTIMIZERS)} or None "
                            "(under the dot convention an optimizer step adds no FLOPs)")


# -- peaks, timing and utilisation -------------------------------------------------------------------

@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s the utilisation divides by, and where it comes from."""

    flops: float
    source: str
    dtype: str = ""


def peak_dtype(model: nn.Module, autocast: str | None = None) -> torch.dtype:
    """The dtype the matmuls run in: the autocast dtype, else the first float parameter's (an
    FSDP2 parameter's ``MixedPrecisionPolicy.param_dtype`` where one is set)."""
    from .trace.fsdp import compute_dtypes

    if autocast is not None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[autocast]
    target = unwrap(model)
    computed = compute_dtypes(target)
    for p in target.parameters():
        if p.is_floating_point():
            return computed.get(id(p), p.dtype)
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """The device the model computes on: its first parameter's (a DTensor's: its mesh's, which
    is where FSDP2 computes when it offloads the shards to the CPU)."""
    from .trace.fsdp import mesh_device

    for p in unwrap(model).parameters():
        return mesh_device(p) if hasattr(p, "device_mesh") else p.device
    return torch.device("cpu")


def resolve_peak(*, peak_flops: float | None = None, device: Any = None, dtype: torch.dtype = torch.float32,
                 on: torch.device | None = None) -> Peak:
    """The dense peak for MFU: ``peak_flops`` (FLOP/s) as given; else the device table's row for
    ``device`` (a name, ``local`` after ``flopmeter calibrate``, a spec file or a DeviceSpec) at
    the table's key for ``dtype`` (fp32 as tf32 when CUDA's float32 matmuls may use TF32); else,
    on CUDA, the row matching the GPU's name. The table holds dense figures only."""
    from .devices import dtype_key, get_device

    if peak_flops is not None:
        if not isinstance(peak_flops, (int, float)) or isinstance(peak_flops, bool) or not peak_flops > 0:
            raise OptionsError(f"peak_flops must be a positive number of FLOP/s, got {peak_flops!r}",
                               hint="for example peak_flops=989.5e12 (H100 SXM, bf16, dense)")
        return Peak(float(peak_flops), "given as peak_flops")
    on = on or torch.device("cpu")
    if device is None:
        if on.type != "cuda":
            raise OptionsError(f"MFU needs the peak throughput of the device, and the model is on {on.type}",
                               hint="give peak_flops=FLOP/s, or device='h100' (a row of flopmeter's device table), "
                                    "or device='local' after flopmeter calibrate")
        device = gpu_row(torch.cuda.get_device_name(on))
    tf32 = on.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    key = dtype_key(dtype, tf32=tf32)
    spec = get_device(device).require_compute("a peak for MFU")
    value, used = spec.peak(key)
    return Peak(value, f"{spec.name}, {used} dense: {spec.source}", used)


def gpu_row(gpu_name: str) -> Any:
    """The device table's row for a name as CUDA reports it ('NVIDIA H100 80GB HBM3'): the row
    whose name or alias is the longest prefix of it; the name itself when none is (then
    :func:`get_device`'s error suggests rows)."""
    from .devices import normalise, table

    key = normalise(gpu_name)
    best, length = None, 0
    for spec in table():
        for name in (spec.name, *spec.aliases):
            n = normalise(name)
            if key.startswith(n) and len(n) > length:
                best, length = spec, len(n)
    return best if best is not None else gpu_name


def synchronize(device: torch.device | None) -> None:
    """Wait for the device's queued work, so that a wall-clock time covers it."""
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def batch_counts(batch: Any) -> tuple[int | None, int | None]:
    """(samples, tokens) of a batch: the leading size of its first tensor, and the element count
    of its token ids (``input_ids``, or an integer tensor of rank 2) when it has them."""
    tensors: list[tuple[str, torch.Tensor]] = []

    def walk(v, name=""):
        if isinstance(v, torch.Tensor):
            tensors.append((name, v))
        elif isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, str(k))
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
    walk(batch)
    if not tensors:
        return None, None
    samples = tensors[0][1].shape[0] if tensors[0][1].ndim else 1
    ids = [t for n, t in tensors if n == "input_ids"]
    if not ids and not isinstance(batch, Mapping):
        ids = [t for _, t in tensors if t.ndim == 2 and not t.is_floating_point() and not t.is_complex()
               and t.dtype != torch.bool]
    tokens = ids[0].numel() if ids else None
    return samples, tokens


@dataclass(frozen=True)
class StepRecord:
    """One timed training step: its FLOPs, time and rates."""

    step: int
    seconds: float
    flops: StepFlops
    samples: int | None
    tokens: int | None
    peak: Peak | None

    @property
    def flops_per_s(self) -> float:
        return self.flops.model_flops / self.seconds if self.seconds > 0 else float("inf")

    @property
    def mfu(self) -> float | None:
        return None if self.peak is None else self.flops.model_flops / self.seconds / self.peak.flops

    @property
    def hfu(self) -> float | None:
        return None if self.peak is None else self.flops.hardware_flops / self.seconds / self.peak.flops

    def metrics(self, prefix: str = "flopmeter/") -> dict[str, float]:
        """The figures a logger takes: step FLOPs, seconds, rates, MFU and HFU."""
        out = {"step_flops": float(self.flops.model_flops), "step_hardware_flops": float(self.flops.hardware_flops),
               "step_seconds": self.seconds, "flops_per_s": self.flops_per_s}
        if self.samples is not None:
            out["samples_per_s"] = self.samples / self.seconds
        if self.tokens is not None:
            out["tokens_per_s"] = self.tokens / self.seconds
        if self.peak is not None:
            out["mfu"] = self.mfu
            out["hfu"] = self.hfu
        return {prefix + k: v for k, v in out.items()}


class Stopwatch:
    """Wall-clock time of a span, the device synchronised at both ends."""

    def __init__(self, device: torch.device | None = None, clock: Callable[[], float] = time.perf_counter):
        self.device, self.clock, self.started = device, clock, None

    def start(self) -> None:
        synchronize(self.device)
        self.started = self.clock()

    def stop(self) -> float | None:
        if self.started is None:
            return None
        synchronize(self.device)
        seconds, self.started = self.clock() - self.started, None
        return seconds


__all__ = ["LengthFit", "PHASES", "Peak", "StepCounter", "StepFlops", "StepRecord", "Stopwatch", "batch_counts",
           "model_loss", "optimizer_name", "resolve_peak", "signature", "split_inputs", "training_flops", "unwrap"]

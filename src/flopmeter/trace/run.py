"""Run a model's forward once under the recorder, on fake tensors (default) or real ones.

The model is never modified: parameters and buffers are substituted *for the call only*
through ``torch.func.functional_call`` (fakes in fake mode; cloned buffers in real mode,
so BatchNorm running statistics are not updated), attributes the forward writes onto its
modules are put back (:mod:`.guard`), the module stack uses global hooks that are removed
in ``finally``, and the RNG state is forked and restored.

Runs are serialised by a process-wide lock: ``functional_call`` swaps tensors on the module
for the duration of the call and the module-stack hooks are global, so two threads counting
at once (the same model or not) would see each other's modules and tensors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensor

from ..errors import InputError, ModelForwardError, OptionsError
from .fakes import fake_like, fake_substitutes, named_tensors, substitutes
from .checks import check_call, real_device
from .events import OpEvent, TensorMeta, tensors_in, to_meta
from .globals import globals_kept
from .guard import AttributeGuard
from .modules import ModuleStack
from .recorder import Recorder, Recording

MODES = ("fake", "real")
_RUN_LOCK = threading.RLock()


@dataclass
class Trace:
    events: list[OpEvent]
    calls: dict[str, int]                 # module path → times called
    outputs: dict[str, list]              # module path → output metas, one per call
    inputs: list[TensorMeta]
    mode: str
    device: str
    inference: bool
    module_inputs: dict[str, list] = field(default_factory=dict)   # module path → (args, kwargs) metas per call
    extra: dict[str, Any] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device | None:
    for t in named_tensors(model):
        return t[1].device
    return None


def _first_float_dtype(model: nn.Module) -> torch.dtype:
    for _, p in named_tensors(model):
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _map_tensors(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        mapped = [_map_tensors(v, fn) for v in value]
        return type(value)(*mapped) if hasattr(value, "_fields") else tuple(mapped)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def normalise_input_shape(input_shape) -> list[tuple[int, ...]]:
    """(1, 3, 224, 224) → [(1, 3, 224, 224)]; [(1, 10), (1, 5)] → two inputs."""
    if input_shape is None:
        return []
    shapes = list(input_shape)
    if shapes and all(isinstance(s, int) for s in shapes):
        shapes = [tuple(shapes)]
    out = []
    for s in shapes:
        if not isinstance(s, (tuple, list, torch.Size)) or not all(isinstance(d, int) and d >= 0 for d in s):
            raise InputError(f"input_shape must be a tuple of non-negative ints or a list of them, got {input_shape!r}",
                             hint="for example input_shape=(1, 3, 224, 224)")
        out.append(tuple(s))
    return out


def record(model: nn.Module, args: tuple, kwargs: dict | None, *, input_shape=None,
           mode: str = "fake", device: str | torch.device | None = None, inference: bool = True,
           module_inputs: bool = False) -> Trace:
    """Run ``model(*args, **kwargs)`` once under the recorder and return its Trace
    (with every module call's input metadata when ``module_inputs`` is set)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise OptionsError(f"unknown mode '{mode}'", hint=f"choose one of: {', '.join(MODES)}")
    check_call(args, kwargs, input_shape)
    kwargs = dict(kwargs or {})
    shapes = normalise_input_shape(input_shape)
    if shapes and args:
        raise InputError("give example inputs or input_shape, not both")
    if not args and not kwargs and not shapes:
        raise InputError("no example inputs", hint="pass tensors after the model, or input_shape=(1, 3, 224, 224)")

    found = model_device(model)
    if mode == "real":
        target = real_device(found, device)      # never report a device the run did not use
    elif device is not None:
        target = torch.device(device)
    elif found is not None and found.type != "meta":
        target = found
    else:
        target = torch.device("cpu")
    in_dtype = _first_float_dtype(model)

    stack = ModuleStack(model, keep_inputs=module_inputs)
    recording = Recording(stack)
    fake_mode = None
    with _RUN_LOCK, torch.random.fork_rng(devices=[]):
        if mode == "fake" and isinstance(model, torch.jit.ScriptModule):
            raise InputError("a TorchScript module runs only in real mode",
                             hint="use mode='real' (CLI: --mode real), or count the eager model")
        if mode == "fake":
            fake_mode, tensors = fake_substitutes(model, target)

            def fake_input(t: torch.Tensor) -> torch.Tensor:
                if isinstance(t, FakeTensor):
                    return t
                if t.device.type == "meta":
                    return fake_like(fake_mode, t, target)
                return fake_mode.from_tensor(t)

            args = _map_tensors(args, fake_input)
            kwargs = _map_tensors(kwargs, fake_input)
            if shapes:
                with fake_mode:
                    args = tuple(torch.empty(s, dtype=in_dtype, device=target) for s in shapes)
        else:
            for name, t in named_tensors(model):
                if t.device.type == "meta":
                    raise InputError(f"real mode needs real weights, but '{name}' is on the meta device",
                                     hint="use mode='fake' (the default) for models without weights")
            tensors = substitutes(model.named_buffers(remove_duplicate=False), torch.Tensor.clone)
            if shapes:
                args = tuple(torch.randn(s, dtype=in_dtype, device=target) for s in shapes)

        inputs = tensors_in(to_meta(args)) + tensors_in(to_meta(kwargs))
        grad = torch.no_grad() if inference else torch.enable_grad()
        guard = AttributeGuard(model)
        recorder = fake_mode if fake_mode is not None else Recorder(recording)
        try:
            with globals_kept(), grad, stack.installed(), recorder.recording_to(recording):
                if isinstance(model, torch.jit.ScriptModule):
                    _run_script_module(model, recorder, args, kwargs)
                else:
                    with recorder:
                        torch.func.functional_call(model, tensors, args, kwargs, strict=False, tie_weights=False)
        except Exception as exc:
            raise _forward_error(exc, model, recording, stack, inputs) from exc
        finally:
            guard.restore()

    return Trace(recording.events, dict(stack.calls), dict(stack.outputs), inputs, mode, str(target), inference,
                 module_inputs=dict(stack.inputs))


def _run_script_module(model, recorder: Recorder, args, kwargs) -> None:
    """TorchScript cannot swap tensors (no stateless API) and calls no Python hooks: run it
    as is, every op at the root, and put its buffers back afterwards."""
    saved = [(b, b.clone()) for b in model.buffers()]
    try:
        with recorder:
            model(*args, **kwargs)
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _forward_error(exc: Exception, model: nn.Module, recording: Recording, stack: ModuleStack,
                   inputs: list[TensorMeta]) -> ModelForwardError:
    failure = recording.failure
    if failure is not None:
        module = failure.module
        shapes = [m for m in tensors_in(failure.args)]
        where = f" in {failure.op} with inputs {', '.join(map(repr, shapes))}"
        op = failure.op
    else:
        module = stack.error_stack[-1][0] if stack.error_stack else ""
        shapes, where, op = None, "", None
    mods = dict(model.named_modules())
    kind = type(mods[module]).__name__ if module in mods else "?"
    label = f"'{module}' ({kind})" if module else f"the root module ({kind})"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (DataDependentOutputException, DynamicOutputShapeException)):
        return ModelForwardError(
            f"the forward of {label}{where} depends on tensor values, which fake tensors do not have",
            module=module, op=op, shapes=shapes, data_dependent=True,
            hint="count it in real mode on real (or random) weights: Options(mode='real'), CLI --mode real")
    return ModelForwardError(
        f"the model's forward failed in {label}{where}: {type(exc).__name__}: {first}",
        module=module, op=op, shapes=shapes,
        hint=f"check the model's inputs ({', '.join(map(repr, inputs)) or 'no tensors'}) against what this module expects",
    )

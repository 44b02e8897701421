"""Lazy modules (``nn.LazyLinear``, ``nn.LazyConv2d`` …): count a copy whose parameters the
forward has materialised; the user's model stays lazy.

A lazy module's parameters have no shape until its first forward infers them from the
input (a forward pre-hook that materialises them and turns the module into its eager class).
Counting needs the shapes, and must not run that hook on the user's module, so
:func:`materialised` makes a copy of the model in which every lazy parameter and buffer is a
fresh uninitialised one and every other tensor is *shared* with the user's model (not
copied: no memory), and runs the copy's forward once:

- fake mode: on the meta device — the inputs and the shared tensors are replaced, for that
  call only, by meta tensors of the same shape, so nothing is computed and nothing shared
  is written; the lazy parameters are created on the meta device;
- real mode: on the real inputs, under ``no_grad``, with the buffers replaced for the call
  by clones (BatchNorm statistics are not updated) and the RNG state restored; the lazy
  parameters get PyTorch's initialisation, as on a first forward.

The counted run then records the copy like any model (its modules are reported under their
eager class names, ``Linear`` for ``LazyLinear``: what ran). Anything that fails on the way
ends in one error with a hint, never PyTorch's own exception: an :class:`InputError` when
the model cannot be copied, a :class:`ModelForwardError` naming the inputs when the forward
that infers the shapes fails.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from ..errors import FlopmeterError, InputError, ModelForwardError
from .events import tensors_in, to_meta
from .fakes import named_tensors
from .walk import ModelWalk
from .run import _RUN_LOCK

_HINT = ("run the model once on an example input before counting it (that initialises its lazy "
         "modules), or replace the lazy modules by their eager forms (nn.Linear for nn.LazyLinear …)")


def has_lazy(model: nn.Module, walk: ModelWalk | None = None) -> bool:
    return any(is_lazy(t) for _, _, t in (walk or ModelWalk(model)).tensors())


def materialised(model: nn.Module, args: tuple, kwargs: dict | None, shapes: list[tuple[int, ...]],
                 mode: str, walk: ModelWalk | None = None) -> nn.Module:
    """``model`` itself when nothing in it is lazy, else a materialised copy (module docstring).
    ``walk``: the model's walk, when the caller has one."""
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule) or not has_lazy(model, walk):
        return model
    try:
        twin = copy.deepcopy(model, _memo(model, "meta" if mode == "fake" else None))
    except Exception as exc:
        raise InputError(f"the model has lazy modules whose parameters are not initialised yet, and it could "
                         f"not be copied to initialise them ({type(exc).__name__}: {_first_line(exc)})",
                         hint=_HINT) from exc
    kwargs = dict(kwargs or {})
    try:
        with _RUN_LOCK, torch.random.fork_rng(devices=[]), torch.no_grad():   # the lock: as for a counted run
            if mode == "fake":
                _run_on_meta(twin, args, kwargs, shapes)
            else:
                _run_real(twin, args, kwargs, shapes)
    except FlopmeterError:
        raise
    except Exception as exc:
        raise _forward_error(exc, args, kwargs, shapes, mode) from exc
    if has_lazy(twin):
        names = [name for name, t in named_tensors(twin) if is_lazy(t)]
        raise InputError(f"the forward left lazy parameters uninitialised: {', '.join(names[:5])}", hint=_HINT)
    return twin


def _memo(model: nn.Module, device: str | None) -> dict[int, Any]:
    """deepcopy memo: a fresh uninitialised tensor for each lazy one (on ``device``, else where
    the user's one is), the tensor itself for the rest."""
    memo: dict[int, Any] = {}
    for _, t in named_tensors(model):
        if id(t) in memo:
            continue
        if is_lazy(t):
            kind = UninitializedParameter if isinstance(t, nn.Parameter) else UninitializedBuffer
            memo[id(t)] = kind(requires_grad=t.requires_grad, device=device or t.data.device, dtype=t.data.dtype)
        else:
            memo[id(t)] = t
    return memo


def _input_dtype(model: nn.Module) -> torch.dtype:
    for _, t in named_tensors(model):
        dtype = t.data.dtype if is_lazy(t) else t.dtype
        if dtype.is_floating_point:
            return dtype
    return torch.float32


def _map(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        mapped = [_map(v, fn) for v in value]
        if isinstance(value, list):
            return mapped
        return type(value)(*mapped) if hasattr(value, "_fields") else tuple(mapped)
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    return value


def _meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


def _run_on_meta(twin: nn.Module, args, kwargs, shapes) -> None:
    shared = {name: _meta(t) for name, t in named_tensors(twin) if not is_lazy(t)}
    if shapes:
        args = tuple(torch.empty(s, dtype=_input_dtype(twin), device="meta") for s in shapes)
    args, kwargs = _map(args, _meta), _map(kwargs, _meta)
    torch.func.functional_call(twin, shared, args, kwargs, strict=False, tie_weights=False)


def _run_real(twin: nn.Module, args, kwargs, shapes) -> None:
    device = next((t.data.device for _, t in named_tensors(twin)), torch.device("cpu"))
    buffers = {name: b.clone() for name, b in twin.named_buffers(remove_duplicate=False) if not is_lazy(b)}
    if shapes:
        args = tuple(torch.randn(s, dtype=_input_dtype(twin), device=device) for s in shapes)
    torch.func.functional_call(twin, buffers, args, kwargs, strict=False, tie_weights=False)


def _forward_error(exc: Exception, args, kwargs, shapes, mode: str) -> ModelForwardError:
    """The forward that was to materialise the lazy parameters failed: name the inputs. On the
    meta device a forward that needs tensor values fails too, so in fake mode the error says
    it may be that (and the CLI's ``--mode auto`` retries in real mode)."""
    given = [repr(t) for t in tensors_in(to_meta((args, kwargs)))] or [f"input_shape {s}" for s in shapes]
    hint = f"check the model's inputs ({', '.join(given) or 'no tensors'}) against what it expects"
    if mode == "fake":
        hint += "; a forward that depends on tensor values counts in real mode: Options(mode='real'), CLI --mode real"
    return ModelForwardError(
        f"the model's forward failed while its lazy modules inferred their parameters from the inputs: "
        f"{type(exc).__name__}: {_first_line(exc)}", module=None, op=None, shapes=None, hint=hint,
        data_dependent=mode == "fake")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

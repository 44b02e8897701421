"""FSDP2 (``fully_shard``) models: counted as the unsharded model one rank computes with.

``fully_shard(module)`` does not wrap: it changes the module's class in place to a subclass of
``FSDPModule``, registers each parameter as a DTensor sharded over the data-parallel mesh (its
``.shape`` is the global one, ``.to_local()`` the rank's shard) and adds forward hooks that
all-gather the parameters before each forward and free them after. A rank thus runs every
forward and backward on whole parameters, on its local batch, and steps the optimizer on its
shards only.

:func:`unsharded` gives the stand-in a count runs instead: a copy of the module tree
(:func:`.fakes.shadow`; the user's modules, hooks and FSDP's state are not touched) in which

- every DTensor parameter is a meta parameter of the global shape, in the dtype the forward
  computes in (``MixedPrecisionPolicy.param_dtype`` where one is set, else the parameter's);
- each ``FSDPModule`` is an instance of the class it was before ``fully_shard``, and the hooks
  of FSDP's state (all-gather, reshard, backward registration) are gone from its hook dicts,
  so nothing of FSDP runs in the count and no collective is issued;
- in their place, hooks that do to the inputs and outputs what FSDP's do: an outermost
  ``fully_shard`` module (a root, in FSDP's terms) moves the input tensors to an accelerator
  it computes on, and where the module's ``MixedPrecisionPolicy`` asks for it, floating-point
  inputs are cast to ``param_dtype`` and outputs to ``output_dtype``;
- ``shards`` maps each sharded parameter's names to the shape and dtype of the rank's shard
  (what the rank's optimizer steps; :class:`.training.TrainSpec`).

Each parameter FSDP manages is read off FSDP's parameter groups (its sharded DTensor), so a
count between a forward and its backward, when a module holds its parameters whole, gives the
same; where this torch keeps them elsewhere, the parameters the modules hold are used, as
FSDP2 holds them between steps (sharded). A DTensor parameter sharded over more than one mesh
dimension (tensor parallelism under FSDP2) or outside every ``fully_shard`` module is refused:
a rank does not compute the unsharded model then.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .fakes import shadow
from .walk import ModelWalk

_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks")
_KWARG_DICTS = ("_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def _fsdp_module_type():
    """``torch.distributed.fsdp.FSDPModule`` when FSDP is imported (no model can be an FSDP2 one
    otherwise, so nothing is imported here)."""
    module = sys.modules.get("torch.distributed.fsdp")
    return getattr(module, "FSDPModule", None) if module is not None else None


def fsdp_modules(model: nn.Module, walk: ModelWalk | None = None) -> list[tuple[str, nn.Module]]:
    """(path, module) of every module of the tree that ``fully_shard`` was applied to."""
    kind = _fsdp_module_type()
    if kind is None:
        return []
    return [(path, m) for path, m in (walk or ModelWalk(model)).modules() if isinstance(m, kind)]


def _policy(module: nn.Module) -> Any:
    """The module's ``MixedPrecisionPolicy`` (None where FSDP's state does not show one)."""
    try:
        return getattr(module._get_fsdp_state(), "_mp_policy", None)
    except (AttributeError, AssertionError):
        return None


def _policies(sharded: list[tuple[str, nn.Module]]) -> dict[int, Any]:
    """id(parameter) → the policy of the innermost ``fully_shard`` module holding it (deepest
    first: a parameter belongs to the state of its nearest FSDP ancestor)."""
    out: dict[int, Any] = {}
    def depth(path: str) -> int:
        return path.count(".") + 1 if path else 0

    for _, m in sorted(sharded, key=lambda item: -depth(item[0])):
        policy = _policy(m)
        for p in m.parameters():
            out.setdefault(id(p), policy)
    return out


def compute_dtypes(model: nn.Module) -> dict[int, torch.dtype]:
    """id(parameter) → the dtype its forward computes in, for the parameters of an FSDP2 model
    whose ``MixedPrecisionPolicy`` sets ``param_dtype`` (empty for any other model)."""
    policies = _policies(fsdp_modules(model))
    return {pid: policy.param_dtype for pid, policy in policies.items()
            if getattr(policy, "param_dtype", None) is not None}


@dataclass
class Unsharded:
    """The stand-in of an FSDP2 model (see the module docstring)."""

    model: nn.Module
    device: torch.device                                          # where the rank computes
    shards: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]  # name, the rank's shard's shape and dtype


def _dtensor_type():
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def _check_placements(name: str, t: Any) -> None:
    shards = [p for p in t.placements if not p.is_replicate()]
    if len(shards) > 1 or not all(p.is_shard() for p in shards):
        raise InputError(f"parameter '{name}' is a DTensor placed {tuple(t.placements)} on a "
                         f"{t.device_mesh.ndim}-dimensional mesh: a rank does not compute with it whole "
                         "(tensor parallelism with FSDP2), and flopmeter counts data-parallel sharding only",
                         hint="count the model before parallelize_module / fully_shard, with each rank's "
                              "batch, and divide the tensor-parallel work by hand")


def mesh_device(t: Any) -> torch.device:
    """The device the rank computes on: the mesh's, that of the shard when it is there (FSDP
    may offload the shards to the CPU), else the current one of the mesh's kind."""
    kind = t.device_mesh.device_type
    if t.device.type == kind:
        return t.device
    module = getattr(torch, kind, None)
    if module is not None and hasattr(module, "current_device") and module.is_available():
        return torch.device(kind, module.current_device())
    return torch.device(kind)


def _is_state_hook(hook: Any, state_type: type) -> bool:
    """Whether a module hook is a composable API's (FSDP's): a method of its state object,
    directly or behind ``functools.wraps`` (the hooks of a grouped ``fully_shard([a, b])``)."""
    for _ in range(8):      # a bound method's ``__wrapped__`` is its function's: look at each layer
        if hook is None:
            return False
        if isinstance(getattr(hook, "__self__", None), state_type):
            return True
        hook = getattr(hook, "__wrapped__", None)
    return False


def _drop_state_hooks(copy: nn.Module, state_type: type) -> None:
    """Remove FSDP's hooks from the copy's own hook dicts (the user's module keeps its own)."""
    gone = []
    for name in _HOOK_DICTS:
        hooks = copy.__dict__[name]
        for key in [k for k, hook in hooks.items() if _is_state_hook(hook, state_type)]:
            del hooks[key]
            gone.append(key)
    for name in _KWARG_DICTS:
        table = copy.__dict__.get(name)
        for key in gone:
            if table is not None:
                table.pop(key, None)
    for key, value in list(copy.__dict__.items()):
        # a method made an FSDP forward by register_fsdp_forward_method (an attribute of the
        # module) runs FSDP's hooks around the class's method: the copy calls the class's
        if type(value) is MethodType and {"_get_fsdp_state", "_pre_forward"} <= set(value.__func__.__code__.co_names):
            del copy.__dict__[key]


def _cast(dtype: torch.dtype, value: Any) -> Any:
    """``value`` with every floating-point tensor in it cast to ``dtype`` (FSDP's input and
    output casts, which go through the same containers)."""
    from torch.distributed.utils import _apply_to_tensors

    def one(t):
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype else t
    return _apply_to_tensors(one, value)


def _cast_inputs(dtype, module, args, kwargs):
    return _cast(dtype, args), _cast(dtype, kwargs)


def _cast_output(dtype, module, args, output):
    return _cast(dtype, output)


def _moved(device: torch.device, value: Any) -> Any:
    from torch.distributed.utils import _apply_to_tensors

    return _apply_to_tensors(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, value)


def _move_inputs(device, module, args, kwargs):
    return _moved(device, args), _moved(device, kwargs)


def _add_input_hooks(copy: nn.Module, policy: Any, root: bool, device: torch.device) -> None:
    """What FSDP's hooks do to inputs and outputs, as hooks of the copy: a root moves the inputs
    to the accelerator (not to the CPU, as FSDP does), then inputs are cast to ``param_dtype``
    (when ``cast_forward_inputs``) and outputs to ``output_dtype``."""
    param_dtype = getattr(policy, "param_dtype", None)
    if param_dtype is not None and getattr(policy, "cast_forward_inputs", True):
        copy.register_forward_pre_hook(functools.partial(_cast_inputs, param_dtype), prepend=True, with_kwargs=True)
    if root and device.type != "cpu":       # registered last with prepend: runs before the cast
        copy.register_forward_pre_hook(functools.partial(_move_inputs, device), prepend=True, with_kwargs=True)
    output_dtype = getattr(policy, "output_dtype", None)
    if output_dtype is not None:
        copy.register_forward_hook(functools.partial(_cast_output, output_dtype))


def _original_class(cls: type, fsdp: type) -> type:
    """The class a module had before ``fully_shard`` (the first of its MRO that is not FSDP's)."""
    return next(c for c in cls.__mro__ if not issubclass(c, fsdp))


def _sharded_params(sharded: list[tuple[str, nn.Module]]) -> dict[int, Any]:
    """id(the tensor a module holds) → FSDP's sharded parameter (a DTensor), for every parameter
    of FSDP's parameter groups, whether the module holds the shard (between steps) or the whole
    parameter (between a forward and its backward); empty where this torch keeps them elsewhere."""
    out: dict[int, Any] = {}
    try:
        for _, m in sharded:
            state = m._get_fsdp_state()
            groups = getattr(state, "_fsdp_param_groups", None)
            if groups is None:
                groups = [g for g in (getattr(state, "_fsdp_param_group", None),) if g is not None]
            for group in groups:
                for fp in group.fsdp_params:
                    info = fp._module_info
                    held = info.module._parameters.get(info.param_name)
                    if held is not None:
                        out[id(held)] = fp.sharded_param
    except (AttributeError, AssertionError):
        return {}
    return out


def unsharded(model: nn.Module) -> Unsharded | None:
    """The stand-in a count of an FSDP2 model runs (see the module docstring); None when no
    module of ``model`` is a ``fully_shard`` one."""
    if _fsdp_module_type() is None:
        return None
    walk = ModelWalk(model)
    sharded = fsdp_modules(model, walk)
    if not sharded:
        return None
    from torch.distributed._composable_state import _State

    fsdp, dtensor = _fsdp_module_type(), _dtensor_type()
    policies, managed = _policies(sharded), _sharded_params(sharded)
    tensors: dict[int, torch.Tensor] = {}
    shards: list[tuple[str, tuple[int, ...], torch.dtype]] = []
    device = None
    for kind, name, t in walk.tensors():
        if kind != "param":
            continue
        full = managed.get(id(t), t)             # FSDP's sharded parameter, whatever the module holds now
        if dtensor is None or not isinstance(full, dtensor):
            continue                             # a parameter FSDP does not shard: every rank holds it whole
        if id(t) not in policies:
            raise InputError(f"parameter '{name}' is a DTensor outside every fully_shard module: a rank does "
                             "not compute with it whole", hint="count the model before it was parallelized")
        _check_placements(name, full)
        with torch.no_grad():
            local = full.to_local()
        shards.append((name, tuple(local.shape), full.dtype))
        if id(t) not in tensors:
            dtype = getattr(policies[id(t)], "param_dtype", None) or full.dtype
            tensors[id(t)] = nn.Parameter(torch.empty(full.shape, dtype=dtype, device="meta"),
                                          requires_grad=full.requires_grad)
            device = device or mesh_device(full)
    if device is None:
        device = next((t.device for *_, t in walk.tensors()), torch.device("cpu"))
    copy = shadow(walk, tensors)
    copies = dict(copy.modules())
    paths = [path for path, _ in sharded]
    for path, m in sharded:
        new = copies[path]
        object.__setattr__(new, "__class__", _original_class(type(m), fsdp))
        _drop_state_hooks(new, _State)
        root = not any(path.startswith(f"{p}.") or (not p and path) for p in paths if p != path)
        _add_input_hooks(new, _policy(m), root, device)
    return Unsharded(copy.model, device, tuple(shards))


__all__ = ["Unsharded", "compute_dtypes", "fsdp_modules", "mesh_device", "unsharded"]

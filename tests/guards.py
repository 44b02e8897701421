"""A snapshot of everything flopmeter promises not to change about a model and the process."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as module_mod
from torch.nn.parameter import is_lazy

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks_with_kwargs")
_GLOBALS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
            "_global_backward_pre_hooks", "_global_module_registration_hooks",
            "_global_parameter_registration_hooks", "_global_buffer_registration_hooks",
            "_global_forward_hooks_with_kwargs", "_global_forward_hooks_always_called")


def _state(v):
    """A copy of a state_dict entry to compare later: tensors cloned (quantized ones as their
    integers, scale and zero point), lazy ones by their kind, tuples (packed quantized
    parameters) entry by entry, anything else (a dtype) as is."""
    if isinstance(v, (tuple, list)):
        return tuple(_state(x) for x in v)
    if not isinstance(v, torch.Tensor):
        return v
    if is_lazy(v):                      # an uninitialised parameter or buffer: it must stay one
        return ("uninitialised", type(v).__name__)
    if v.device.type == "meta":
        return (v.shape, v.dtype)
    if v.is_quantized:
        return (v.int_repr(), v.dtype, str(v.qscheme()))
    return v.clone()


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: _state(v) for k, v in model.state_dict(keep_vars=False).items()},
        # the tensor objects themselves (state_dict is not used here: a quantized module builds
        # its entries afresh on each call)
        "identity": {k: id(v) for k, v in [*model.named_parameters(remove_duplicate=False),
                                           *model.named_buffers(remove_duplicate=False)]},
        "training": {n: m.training for n, m in model.named_modules()},
        "classes": {n: type(m) for n, m in model.named_modules()},      # a lazy module keeps its lazy class
        "hooks": {n: tuple(len(getattr(m, h, {}) or {}) for h in _HOOK_DICTS) for n, m in model.named_modules()},
        "attrs": {n: sorted(vars(m)) for n, m in model.named_modules()},
        "params": {n: (id(p), p.requires_grad, p.grad is None) for n, p in model.named_parameters()},
        "globals": tuple(len(getattr(module_mod, g)) for g in _GLOBALS),
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key in before:
        if key == "state":
            assert before["state"].keys() == after["state"].keys()
            for name, value in before["state"].items():
                assert _equal(value, after["state"][name]), f"state_dict entry {name} changed"
        elif key == "rng":
            assert torch.equal(before["rng"], after["rng"]), "global RNG state advanced"
        else:
            assert before[key] == after[key], f"{key} changed"

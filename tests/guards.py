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


def _state(v: torch.Tensor):
    if is_lazy(v):                      # an uninitialised parameter or buffer: it must stay one
        return ("uninitialised", type(v).__name__)
    return v.clone() if v.device.type != "meta" else (v.shape, v.dtype)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: _state(v) for k, v in model.state_dict(keep_vars=False).items()},
        "identity": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
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
                other = after["state"][name]
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, other), f"state_dict entry {name} changed"
                else:
                    assert value == other
        elif key == "rng":
            assert torch.equal(before["rng"], after["rng"]), "global RNG state advanced"
        else:
            assert before[key] == after[key], f"{key} changed"

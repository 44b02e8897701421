"""Global torch state a forward may change, put back after the count's run (also when the
forward raises): the default dtype and device, grad mode, deterministic-algorithms and anomaly
settings, float32 matmul precision, the number of threads, and the global module hooks and
registration hooks of ``torch.nn.modules.module`` (a forward that registers one and raises
would otherwise leave it on every module of the process)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.modules.module as _module

_HOOK_DICTS = tuple(name for name in (
    "_global_forward_pre_hooks", "_global_forward_hooks", "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs", "_global_backward_pre_hooks", "_global_backward_hooks",
    "_global_module_registration_hooks", "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks") if isinstance(getattr(_module, name, None), dict))
_HOOK_FLAGS = tuple(name for name in ("_global_is_full_backward_hook",) if hasattr(_module, name))


def _snapshot() -> dict:
    return {
        "dtype": torch.get_default_dtype(),
        "device": torch.get_default_device(),
        "grad": torch.is_grad_enabled(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
        "anomaly": (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
        "hooks": {name: dict(getattr(_module, name)) for name in _HOOK_DICTS},
        "flags": {name: getattr(_module, name) for name in _HOOK_FLAGS},
    }


def _restore(saved: dict) -> None:
    if torch.get_default_dtype() != saved["dtype"]:
        torch.set_default_dtype(saved["dtype"])
    if torch.get_default_device() != saved["device"]:
        torch.set_default_device(saved["device"])
    torch.set_grad_enabled(saved["grad"])
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
            != saved["deterministic"]:
        deterministic, warn_only = saved["deterministic"]
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    if (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()) != saved["anomaly"]:
        torch.set_anomaly_enabled(*saved["anomaly"])
    if torch.get_float32_matmul_precision() != saved["matmul_precision"]:
        torch.set_float32_matmul_precision(saved["matmul_precision"])
    if torch.get_num_threads() != saved["threads"]:
        torch.set_num_threads(saved["threads"])
    for name, before in saved["hooks"].items():
        hooks = getattr(_module, name)
        if hooks.keys() != before.keys() or any(hooks[k] is not v for k, v in before.items()):
            hooks.clear()
            hooks.update(before)
    for name, value in saved["flags"].items():
        setattr(_module, name, value)


@contextlib.contextmanager
def globals_kept():
    """Run the body and put the global torch state above back as it was."""
    saved = _snapshot()
    try:
        yield
    finally:
        _restore(saved)

"""Global torch state a forward may change, put back after the count's run (also when the
forward raises): the default dtype and device, grad mode, deterministic-algorithms and anomaly
settings, float32 matmul precision, the number of threads, the global module hooks and
registration hooks of ``torch.nn.modules.module`` (a forward that registers one and raises
would otherwise leave it on every module of the process), and the backend settings of
:data:`_SETTINGS` (cuDNN, cuBLAS, oneDNN, scaled-dot-product kernels, the multi-head attention
fast path, autocast, warn-always, flush-denormal, TF32 precisions)."""

from __future__ import annotations

import contextlib

import torch
import torch.backends.cuda
import torch.backends.cudnn
import torch.backends.mkldnn
import torch.backends.opt_einsum
import torch.nn.modules.module as _module
from torch.utils._mode_utils import no_dispatch

_HOOK_DICTS = tuple(name for name in (
    "_global_forward_pre_hooks", "_global_forward_hooks", "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs", "_global_backward_pre_hooks", "_global_backward_hooks",
    "_global_module_registration_hooks", "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks") if isinstance(getattr(_module, name, None), dict))
_HOOK_FLAGS = tuple(name for name in ("_global_is_full_backward_hook",) if hasattr(_module, name))


def _attribute(owner, name: str):
    return (lambda: getattr(owner, name)), (lambda value: setattr(owner, name, value))


try:
    import numpy as _np
    _DENORMAL, _ONE = _np.float32(1e-40), _np.float32(1.0)
except ImportError:
    _np = None


def _flushing_denormals() -> bool:
    """Whether ``torch.set_flush_denormal(True)`` is in effect on this thread (torch has no
    getter): a float32 denormal times one comes out as zero (NumPy's scalars compute on the same
    CPU flags, in a fraction of a tensor op's time)."""
    if _np is not None:
        return bool(_DENORMAL * _ONE == 0)
    with no_dispatch():
        return bool((torch.full((1,), 1e-40, dtype=torch.float32, device="cpu") * 1.0).item() == 0.0)


def _settings() -> tuple:
    """(name, getter, setter) of each backend setting this torch has; the TF32 settings last, the
    legacy ``allow_tf32`` flags before the precisions they are read from (restoring a legacy flag
    through its own setter keeps the two APIs consistent)."""
    backends = torch.backends
    found = []
    for label, owner, names in (
            ("cudnn", backends.cudnn, ("enabled", "benchmark", "benchmark_limit", "deterministic")),
            ("cuda.matmul", backends.cuda.matmul, ("allow_fp16_reduced_precision_reduction",
                                                   "allow_bf16_reduced_precision_reduction", "allow_fp16_accumulation")),
            ("mkldnn", backends.mkldnn, ("enabled", "deterministic")),
            ("opt_einsum", backends.opt_einsum, ("enabled", "strategy"))):
        found += [(f"{label}.{n}", *_attribute(owner, n)) for n in names if hasattr(owner, n)]
    cuda = backends.cuda
    for get, put in (("flash_sdp_enabled", "enable_flash_sdp"), ("mem_efficient_sdp_enabled", "enable_mem_efficient_sdp"),
                     ("math_sdp_enabled", "enable_math_sdp"), ("cudnn_sdp_enabled", "enable_cudnn_sdp"),
                     ("fp16_bf16_reduction_math_sdp_allowed", "allow_fp16_bf16_reduction_math_sdp")):
        if hasattr(cuda, get) and hasattr(cuda, put):
            found.append((f"sdp.{get}", getattr(cuda, get), getattr(cuda, put)))
    mha = getattr(backends, "mha", None)
    if mha is not None and hasattr(mha, "get_fastpath_enabled"):
        found.append(("mha.fastpath", mha.get_fastpath_enabled, mha.set_fastpath_enabled))
    for device in ("cpu", "cuda"):
        found.append((f"autocast.{device}", lambda d=device: torch.is_autocast_enabled(d),
                      lambda v, d=device: torch.set_autocast_enabled(d, v)))
        found.append((f"autocast.{device}.dtype", lambda d=device: torch.get_autocast_dtype(d),
                      lambda v, d=device: torch.set_autocast_dtype(d, v)))
    found += [("autocast.cache", torch.is_autocast_cache_enabled, torch.set_autocast_cache_enabled),
              ("warn_always", torch.is_warn_always_enabled, torch.set_warn_always),
              ("flush_denormal", _flushing_denormals, torch.set_flush_denormal)]
    for label, owner in (("cudnn", backends.cudnn), ("cuda.matmul", cuda.matmul)):   # legacy, then the precisions
        if hasattr(owner, "allow_tf32"):
            found.append((f"{label}.allow_tf32", *_attribute(owner, "allow_tf32")))
    precisions = [("backends", backends), ("cuda.matmul", cuda.matmul), ("cudnn", backends.cudnn),
                  ("cudnn.conv", getattr(backends.cudnn, "conv", None)), ("cudnn.rnn", getattr(backends.cudnn, "rnn", None)),
                  ("mkldnn", backends.mkldnn),
                  *((f"mkldnn.{part}", getattr(backends.mkldnn, part, None)) for part in ("matmul", "conv", "rnn"))]
    found += [(f"{label}.fp32_precision", *_attribute(owner, "fp32_precision")) for label, owner in precisions
              if owner is not None and hasattr(owner, "fp32_precision")]
    return tuple(found)


_SETTINGS = _settings()


def _settings_snapshot() -> dict:
    saved = {}
    for name, get, _ in _SETTINGS:
        try:
            saved[name] = get()
        except RuntimeError:          # a setting this build cannot read (e.g. mixed TF32 flags): left alone
            continue
    return saved


def _settings_restore(saved: dict) -> None:
    for name, get, put in _SETTINGS:
        if name not in saved:
            continue
        try:
            if get() != saved[name]:
                put(saved[name])
        except RuntimeError:          # a setting the forward made unreadable: put it back all the same
            put(saved[name])


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
        "settings": _settings_snapshot(),
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
    _settings_restore(saved["settings"])


@contextlib.contextmanager
def globals_kept():
    """Run the body and put the global torch state above back as it was."""
    saved = _snapshot()
    try:
        yield
    finally:
        _restore(saved)

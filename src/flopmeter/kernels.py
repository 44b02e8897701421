"""Which CUDA device a count takes its kernels from (:mod:`flopmeter.trace.kernels` applies them).

- ``Options(device="cuda:H100")`` (CLI ``--device cuda:H100``): the named row of the device
  table (:mod:`flopmeter.devices`), by its compute capability; ``cuda:0`` is an index, as in
  PyTorch.
- ``device="cuda"`` with no name: this machine's GPU when PyTorch sees one, else
  :data:`DEFAULT` (H100 SXM), stated in the report as the default.
- A budget that names a device (``--fits H100``) or a roofline device (``--device-spec a100``)
  makes the run that device's (:func:`device_for`), unless the caller asked for another device.

The facts of the build come from the installed PyTorch: the cuDNN runtime version (cuDNN
attention), the CUDA version it was built for, whether flash attention is built in. A CPU-only
build is read as PyTorch's CUDA build of the same release (flash and memory-efficient built in)
with no cuDNN attention (its version is unknown), as the record's note says.
"""

from __future__ import annotations

import re

import torch

from .devices import DeviceSpec, get_device
from .errors import OptionsError
from .trace.sdpa_rules import CudaTarget

DEFAULT = "H100 SXM"
_INDEX = re.compile(r"cuda(:[0-9]+)?")


def build_facts() -> dict:
    """What the installed PyTorch brings to a CUDA device: cuDNN, CUDA version, fused kernels."""
    cuda = torch.version.cuda
    if cuda is None:                           # a CPU-only build: read as the CUDA build of this release
        return {"cudnn": None, "cuda": None, "flash_built": True, "mem_efficient_built": True}
    try:
        cudnn = torch.backends.cudnn.version()
    except (RuntimeError, OSError):
        cudnn = None
    major, minor = (int(x) for x in cuda.split(".")[:2])
    return {"cudnn": cudnn, "cuda": (major, minor), "flash_built": torch.backends.cuda.is_flash_attention_available(),
            "mem_efficient_built": True}


def build_notes() -> list[str]:
    if torch.version.cuda is None:
        return [("this PyTorch is a CPU-only build: the CUDA build of the same release is assumed (flash and "
                 "memory-efficient attention built in); cuDNN attention is not considered (its version is unknown)")]
    return []


def target_of(spec: DeviceSpec, source: str = "named") -> CudaTarget:
    """The kernel target of a device-table row (an NVIDIA GPU with a compute capability)."""
    if spec.compute_capability is None or (spec.vendor or "NVIDIA") != "NVIDIA":
        raise OptionsError(f"{spec.name} is not a CUDA device with a compute capability in the device table, so "
                           "flopmeter has no kernel rules for it",
                           hint="name an NVIDIA GPU (flopmeter devices lists them), or count on cpu")
    return CudaTarget(spec.name, tuple(spec.compute_capability), source=source, notes=tuple(build_notes()),
                      **build_facts())


def default_target() -> CudaTarget:
    """This machine's GPU (device 0) when PyTorch sees one, else :data:`DEFAULT`."""
    if torch.cuda.is_available():
        try:
            major, minor = torch.cuda.get_device_capability(0)
            name = torch.cuda.get_device_name(0)
        except (RuntimeError, AssertionError):          # a GPU PyTorch lists but cannot open
            pass
        else:
            return CudaTarget(name, (major, minor), source="local", notes=tuple(build_notes()), **build_facts())
    return target_of(get_device(DEFAULT), source="default")


def cuda_target(text) -> CudaTarget | None:
    """The target named by a device string: ``cuda:NAME`` → that row; ``cuda`` or ``cuda:N`` → the
    default; anything else (cpu, meta, …) → None."""
    if isinstance(text, torch.device):
        text = str(text)
    if not isinstance(text, str):
        return None
    name = text.strip()
    if not name.lower().startswith("cuda"):
        return None
    if _INDEX.fullmatch(name.lower()):
        return default_target()
    if not name.lower().startswith("cuda:"):
        return None
    return target_of(get_device(name[5:].strip()))


def split(device) -> tuple[str | None, CudaTarget | None]:
    """(the torch device to run on, the kernel target): ``cuda:H100`` → ("cuda", H100)."""
    target = cuda_target(device)
    if target is not None and isinstance(device, str) and not _INDEX.fullmatch(device.strip().lower()):
        return "cuda", target
    return (None if device is None else str(device)), target


def is_named_cuda(text) -> bool:
    """Whether ``text`` is ``cuda:NAME`` with a name (not an index)."""
    return isinstance(text, str) and text.lower().startswith("cuda:") and not _INDEX.fullmatch(text.strip().lower())


def device_for(spec: DeviceSpec | None, requested: str | None) -> str | None:
    """The device a count answering a question about ``spec`` runs as: ``cuda:NAME`` when ``spec``
    is a CUDA device and the caller asked for no device or a plain ``cuda``; else ``requested``
    (the report then says plainly that the kernels are not that device's)."""
    if spec is None or spec.compute_capability is None or (spec.vendor or "NVIDIA") != "NVIDIA":
        return requested
    if requested is None or _INDEX.fullmatch(str(requested).strip().lower()):
        return f"cuda:{spec.name}"
    return requested


__all__ = ["DEFAULT", "build_facts", "cuda_target", "default_target", "device_for", "is_named_cuda", "split",
           "target_of"]

"""Checks of what a caller passes to ``count`` before anything runs, so that a mistake is one
:class:`FlopmeterError` with a hint, not a TypeError from deep inside: the device (a
device type PyTorch knows; CUDA in real mode only with a GPU), keyword inputs (a dict),
``input_shape`` (a shape or a list of shapes whose sizes fit int64), and the device a real run
reports (the one its tensors are on, never one it did not run on)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from ..errors import InputError, OptionsError

DEVICE_TYPES = ("cpu", "cuda", "meta", "mps", "xpu", "hpu", "mtia", "privateuseone")


def check_device(device, mode: str = "fake") -> None:
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionsError(f"unknown device {device!r}; PyTorch knows {', '.join(DEVICE_TYPES)}",
                           hint="use 'cpu' or 'cuda' (a fake count on cuda needs no GPU)") from None
    if mode == "real" and parsed.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError("device 'cuda' in real mode runs on a CUDA GPU, and PyTorch sees none here",
                           hint="use mode='fake' (the default): it counts as if on cuda without a GPU")


def check_call(args: tuple, kwargs, input_shape) -> None:
    if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
        raise InputError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__} {kwargs!r:.80}",
                         hint="e.g. kwargs={'attention_mask': mask}; positional inputs go after the model")
    if input_shape is None:
        return
    shapes = input_shape
    if isinstance(shapes, (tuple, list, torch.Size)) and shapes and all(_int(d) for d in shapes):
        shapes = [shapes]
    if not isinstance(shapes, (tuple, list)) or not shapes or not all(
            isinstance(s, (tuple, list, torch.Size)) and all(_int(d) and d >= 0 for d in s) for s in shapes):
        raise InputError(f"input_shape must be a shape such as (1, 3, 224, 224) or a list of shapes, "
                         f"got {input_shape!r:.80}", hint="for example input_shape=(1, 3, 224, 224)")
    for s in shapes:
        if math.prod(s) >= 2**63:
            raise InputError(f"input_shape {tuple(s)} has more elements than a tensor can index (2^63)",
                             hint="check the sizes, e.g. input_shape=(1, 3, 224, 224)")


def check_not_nested(args: tuple, kwargs) -> None:
    """Refuse nested (jagged) tensors among the inputs: their ops have no shapes to cost."""
    stack = [args, kwargs]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            if value.is_nested:
                raise InputError("a nested tensor (torch.nested) input is not supported: its ops have no fixed "
                                 "shapes to count", hint="pad the sequences into one dense tensor, or count each "
                                                          "sequence length separately")
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def free_memory() -> int | None:
    """Bytes of memory available to a new allocation on this machine (Linux MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_input_memory(shapes: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device) -> None:
    """Refuse, before allocating, real-mode inputs from ``input_shape`` larger than the free
    memory of ``device`` (host memory for the CPU, the GPU's free memory for CUDA)."""
    need = sum(math.prod(s) for s in shapes) * dtype.itemsize
    if device.type == "cuda" and torch.cuda.is_available():
        free = torch.cuda.mem_get_info(device)[0]
    elif device.type == "cpu":
        free = free_memory()
    else:
        return
    if free is not None and need > free:
        raise InputError(f"the inputs of input_shape {', '.join(map(str, shapes))} need {need:,} bytes in real "
                         f"mode, and {free:,} bytes of memory are free on {device.type}",
                         hint="count in fake mode (the default; it allocates no inputs), or use smaller inputs")


def _int(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool)


def real_device(found: torch.device | None, requested) -> torch.device:
    """Where a real run happens: the model's device. A request for another device is refused,
    since the report would claim a device the run did not use."""
    here = found if found is not None and found.type != "meta" else torch.device("cpu")
    if requested is not None and torch.device(requested).type != here.type:
        raise OptionsError(f"real mode runs the model where its weights are ({here.type}), not on "
                           f"'{torch.device(requested)}'",
                           hint=f"move the model first (model.to('{torch.device(requested)}')), or use fake mode")
    return here

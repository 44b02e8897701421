"""The things benchmarks time: a bare forward, flopmeter, PyTorch's FlopCounterMode and, when
importable, ptflops, fvcore, thop, torchprofile and calflops.

Each counter is ``fn(model, inputs) -> MACs`` for ``inputs``, a tuple of positional tensors.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time

import torch

import flopmeter


def plain_forward(model, inputs):
    with torch.no_grad():
        model(*inputs)


def flop_counter_mode(model, inputs) -> dict:
    """PyTorch's FlopCounterMode around a no_grad forward: op name → FLOPs (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(*inputs)
    return {str(op): n for op, n in fcm.get_flop_counts()["Global"].items()}


def flopmeter_macs(model, inputs, options=None) -> int:
    return flopmeter.count(model, *inputs, options=options).macs


def optional_tools() -> tuple[dict, list[str]]:
    """Third-party counters that are importable: name → fn(model, inputs) -> MACs."""
    tools, notes = {}, []
    try:
        from ptflops import get_model_complexity_info

        def ptflops_fn(model, inputs):
            macs, _ = get_model_complexity_info(
                model, tuple(inputs[0].shape[1:]), input_constructor=lambda _: inputs[0],
                as_strings=False, print_per_layer_stat=False, verbose=False)
            return macs
        tools["ptflops"] = ptflops_fn
    except ImportError:
        notes.append("ptflops not installed: skipped")
    try:
        from fvcore.nn import FlopCountAnalysis   # fvcore's "flops" are MACs
        tools["fvcore"] = lambda model, inputs: FlopCountAnalysis(model, inputs).unsupported_ops_warnings(
            False).uncalled_modules_warnings(False).total()
    except ImportError:
        notes.append("fvcore not installed: skipped")
    try:
        from thop import profile
        held: dict[int, torch.nn.Module] = {}

        def thop_fn(model, inputs):   # thop adds buffers and hooks: it profiles its own copy, made once
            if id(model) not in held:
                held.clear()
                held[id(model)] = copy.deepcopy(model)
            return profile(held[id(model)], inputs=inputs, verbose=False)[0]
        tools["thop"] = thop_fn
    except ImportError:
        notes.append("thop not installed: skipped")
    try:
        from torchprofile import profile_macs
        tools["torchprofile"] = lambda model, inputs: profile_macs(model, inputs)
    except ImportError:
        notes.append("torchprofile not installed: skipped")
    try:
        from calflops import calculate_flops

        def calflops_fn(model, inputs):
            with contextlib.redirect_stdout(io.StringIO()):
                _, macs, _ = calculate_flops(model, args=list(inputs), print_results=False, print_detailed=False,
                                             output_as_string=False)
            return macs
        tools["calflops"] = calflops_fn
    except ImportError:
        notes.append("calflops not installed: skipped")
    return {key: isolated(fn) for key, fn in tools.items()}, notes


def isolated(fn):
    """fn, with torch, torch.nn.functional and Tensor put back as they were after each call:
    some counters patch them and leave patches behind when they fail, breaking the next one."""
    namespaces = (torch, torch.nn.functional, torch.Tensor)

    def call(*args):
        saved = [dict(vars(ns)) for ns in namespaces]
        try:
            return fn(*args)
        finally:
            for ns, before in zip(namespaces, saved):
                for key, value in before.items():
                    if vars(ns).get(key) is not value:
                        setattr(ns, key, value)
    return call


def timed(fn, *args):
    """(milliseconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - start) * 1e3, result

"""Closed forms after the run: a module's configuration kept in the trace, and a stand-in
rebuilt from it.

At record time (for ``explain``) each module that a closed form covers keeps the name of
that standard layer class and its plain attributes (numbers, strings, tuples — never
tensors or user objects). After the run, :func:`standin` rebuilds an instance of the
standard class from them, with meta tensors of the recorded shapes as parameters, so the
closed forms read a module without the user's model being there.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import NoClosedFormError
from .registry import LAYERS

_PLAIN = (bool, int, float, str, type(None))


def _plain(value) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return False


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def layer_config(module: nn.Module) -> tuple[str | None, dict]:
    """(qualified name of the standard layer whose closed form applies, plain attributes), or
    (None, {}) when no closed form covers the module."""
    try:
        base = LAYERS.base(module)
    except NoClosedFormError:
        return None, {}
    config = {k: v for k, v in vars(module).items() if _plain(v)}
    # parameters and buffers registered as None (bias=False) are not in the trace's table
    config["__none__"] = [k for k, v in (*module._parameters.items(), *module._buffers.items()) if v is None]
    return _qualname(base), config


def _layer_class(name: str) -> type:
    for t in LAYERS.types():
        if _qualname(t) == name:
            return t
    raise NoClosedFormError(f"no closed form for {name.rsplit('.', 1)[-1]}",
                            hint="the traced ops are still counted; only the closed-form comparison is missing")


def standin(trace, path: str) -> nn.Module:
    """An instance of the standard layer recorded for ``path``, with meta parameters."""
    info = trace.module(path)
    if info is None or info.layer is None:
        kind = info.type if info else path
        raise NoClosedFormError(f"no closed form for {kind}",
                                hint="its traced ops are still counted; closed forms cover the standard layers")
    return _build(trace, info, _layer_class(info.layer))


def _build(trace, info, cls: type) -> nn.Module:
    m = object.__new__(cls)
    attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in info.config.items() if k != "__none__"}
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                  "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                  "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                  "_forward_pre_hooks_with_kwargs"):
        attrs[hooks] = OrderedDict()
    prefix = info.path + "." if info.path else ""
    params, buffers = OrderedDict(), OrderedDict()
    for name in info.config.get("__none__", ()):
        params[name] = None
    for p in trace.params:
        for name in (p.name, *p.aliases):
            owner, _, leaf = name.rpartition(".")
            if owner == info.path:
                t = torch.empty(p.shape, dtype=p.dtype, device="meta")
                (params if p.kind == "param" else buffers)[leaf] = (
                    nn.Parameter(t, requires_grad=p.requires_grad) if p.kind == "param" else t)
    children = OrderedDict()
    for child in trace.modules:
        if child.path.startswith(prefix) and child.path != info.path and "." not in child.path[len(prefix):]:
            children[child.path[len(prefix):]] = (
                _build(trace, child, _layer_class(child.layer)) if child.layer else _empty(child))
    attrs.update(_parameters=params, _buffers=buffers, _modules=children, _non_persistent_buffers_set=set())
    m.__dict__.update(attrs)
    return m


def _empty(info) -> nn.Module:
    m = nn.Module()
    m.training = info.config.get("training", False)
    return m


__all__ = ["layer_config", "standin"]

"""One walk of a model's module tree, shared by everything a run reads off it.

A run needs the module tree several times over: the lazy-module check, the fake parameters
and their cache signature, the parameter table, quantized packed weights, the module stack's
names, replay's structural twins and the module table of the trace. On a model of 80,000
modules (a 6,000-layer Llama) each walk through torch's nested generators costs a quarter of a
second, so a run walks the tree once (:class:`ModelWalk`) and every reader takes its list from
it; the shadow the forward runs on (:func:`.fakes.shadow`) gets its walk by mapping this one.
"""

from __future__ import annotations

import torch
from torch import nn

_LISTS = (nn.Module.named_modules, nn.Module.named_parameters, nn.Module.named_buffers)
_PLAIN_LISTING: set[type] = set()


def all_modules(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """``named_modules(remove_duplicate=False)`` as a list, walked here (torch's nested
    generators cost a second on a model of 80,000 modules); None when a module's class lists
    its modules, parameters or buffers its own way (then ask torch)."""
    out = []
    stack = [("", model)]
    while stack:
        prefix, m = stack.pop()
        kind = type(m)
        if kind not in _PLAIN_LISTING:
            if (kind.named_modules, kind.named_parameters, kind.named_buffers) != _LISTS:
                return None
            _PLAIN_LISTING.add(kind)
        out.append((prefix, m))
        children = m._modules
        if children:
            stack.extend(reversed([(f"{prefix}.{k}" if prefix else k, c) for k, c in children.items() if c is not None]))
    return out


class ModelWalk:
    """The module tree of ``model`` walked once: :meth:`modules` is ``named_modules()`` (a shared
    module once, under its first name), :meth:`tensors` every parameter and buffer under every
    name. Read lazily and kept; a walk describes the tree as it was when it was read."""

    def __init__(self, model: nn.Module, listing: list[tuple[str, nn.Module]] | None = None, *, walked: bool = False):
        self.model = model
        self._all = listing if walked else all_modules(model)
        self._modules: list[tuple[str, nn.Module]] | None = None
        self._tensors: list[tuple[str, str, torch.Tensor]] | None = None
        self.hooks_kept: list[tuple[dict, dict]] = []     # a shadow's: the originals' hook dicts (fakes.shadow)

    def modules(self) -> list[tuple[str, nn.Module]]:
        """``list(model.named_modules())``."""
        if self._modules is None:
            if self._all is None:
                self._modules = list(self.model.named_modules())
            else:
                seen: set[int] = set()
                out = []
                for path, m in self._all:       # pre-order: a repeated module's subtree was seen with it
                    if id(m) not in seen:
                        seen.add(id(m))
                        out.append((path, m))
                self._modules = out
        return self._modules

    def tensors(self) -> list[tuple[str, str, torch.Tensor]]:
        """(``"param"``/``"buffer"``, name, tensor) for every parameter and buffer under every name
        (tied tensors under each of theirs), in the order of ``named_parameters(remove_duplicate=
        False)`` then ``named_buffers(…)``."""
        if self._tensors is None:
            out: list[tuple[str, str, torch.Tensor]] = []
            mods = self._all
            for kind in ("param", "buffer"):
                if mods is None:
                    listing = self.model.named_parameters if kind == "param" else self.model.named_buffers
                    out.extend((kind, name, t) for name, t in listing(remove_duplicate=False))
                    continue
                group = "_parameters" if kind == "param" else "_buffers"
                for prefix, m in mods:
                    tensors = getattr(m, group)
                    if tensors:
                        out.extend((kind, f"{prefix}.{k}" if prefix else k, t) for k, t in tensors.items()
                                   if t is not None)
            self._tensors = out
        return self._tensors

    def named_tensors(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs of :meth:`tensors`."""
        return [(name, t) for _, name, t in self.tensors()]

    def mapped(self, copy: nn.Module, copies: dict[int, nn.Module]) -> "ModelWalk":
        """The walk of ``copy``, a copy of this tree whose modules are ``copies[id(original)]``
        (same names, same sharing)."""
        if self._all is None:
            return ModelWalk(copy)
        walk = ModelWalk(copy, [(path, copies[id(m)]) for path, m in self._all], walked=True)
        if self._modules is not None:
            walk._modules = [(path, copies[id(m)]) for path, m in self._modules]
        return walk

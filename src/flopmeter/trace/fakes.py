"""The model the run executes: a shadow of the user's module tree with our own tensors.

The user's modules are never run and never touched. :func:`shadow` copies the module tree —
each module a new object of the same class whose attribute dict is a shallow copy, with its
own ``_parameters``, ``_buffers`` and ``_modules`` dicts and its own copies of plain dict and
list attributes — and puts stand-in tensors in place of the parameters and buffers (fakes in
fake mode; clones in real mode, so in-place writes by the forward land on copies). A forward
running in another thread on the user's model sees nothing of a count, attributes a forward
writes land on the shadow, and a shared module is copied once (it stays shared).

Making a fake tensor is an op dispatched through the FakeTensorMode; for a model with many
small tensors that costs as much as its whole fake forward. So the fakes (and the mode they
belong to) are kept in a ``WeakKeyDictionary`` keyed on the model — nothing is attached to
the model, and the entry goes when the model does. The entry is rebuilt whenever the model's
tensors change: a different tensor object, shape, stride, dtype or ``requires_grad`` under
any name, or another target device. Values are never read in fake mode, so they do not count.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from types import MemberDescriptorType, MethodType

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

from .recorder import RecordingFakeMode
from .walk import ModelWalk

_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_COPIED = frozenset({dict, list, OrderedDict})     # exact types (a set: most attributes are none of them)
_REMADE = frozenset({"_parameters", "_buffers", "_modules"})     # made anew by shadow(), not copied
_SET_DICT = object.__setattr__
_SLOTS: dict[type, tuple] = {}      # a plain dict: looked up per module per count (module classes live on)


def _slots(cls: type) -> tuple:
    """The slot descriptors of ``cls`` and its bases (a module may hold attributes in slots
    next to its ``__dict__``), found once per class."""
    found = _SLOTS.get(cls)
    if found is None:
        found = _SLOTS[cls] = tuple(d for c in cls.__mro__ for d in vars(c).values()
                                    if type(d) is MemberDescriptorType)
    return found


def named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer under every name (tied tensors under each of their names), in
    the order of ``named_parameters(remove_duplicate=False)`` then ``named_buffers(…)``."""
    return ModelWalk(model).named_tensors()


def first_tensors(model: nn.Module):
    """Parameters then buffers, lazily (for a caller that stops at the first)."""
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def fake_like(mode: FakeTensorMode, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fake tensor of t's shape, strides and dtype on ``device``; t's values are not read.
    Made from a new meta tensor, not by an op through the fake mode: the same fake tensor
    (``empty_strided`` under the mode makes it this way) at a fifth of the cost, which matters
    for a model of many thousands of parameters."""
    with unset_fake_temporarily():
        return _fake(mode, t, torch.device(device))


def _fake(mode: FakeTensorMode, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """:func:`fake_like` where no fake mode is active."""
    meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
    f = mode.fake(meta, device)               # what the mode's own kernels make
    if t.requires_grad:
        f.requires_grad_(True)
    return f


def fake_substitutes(walk: ModelWalk, device: torch.device,
                     label: str | None = None) -> tuple[RecordingFakeMode, dict[int, torch.Tensor]]:
    """The (recording) fake mode and id(tensor) → fake for every parameter and buffer on
    ``device``; ``label``: the device the fakes stand for (their cached references name it)."""
    model, named = walk.model, walk.tensors()
    signature = (str(device), label or str(device), tuple((name, id(t), t.shape, t.stride(), t.dtype, t.requires_grad)
                                    for _, name, t in named))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1], cached[2]
    mode = RecordingFakeMode(allow_non_fake_inputs=True)
    target = torch.device(device)
    with unset_fake_temporarily():
        fakes = substitutes(named, lambda t: _fake(mode, t, target))
    _CACHE[model] = (signature, mode, fakes)
    return mode, fakes


class Substitutes(dict):
    """id(tensor) → stand-in; ``refs`` keeps the stand-ins' TensorRefs between runs (fake mode's
    cached stand-ins: the same model gives the same references)."""

    refs = None


def substitutes(named, make) -> dict[int, torch.Tensor]:
    """id(tensor) → make(tensor) for tuples ending in a tensor; a tensor under several names gets one."""
    made: dict[int, torch.Tensor] = Substitutes()
    for *_, t in named:
        if id(t) not in made:
            made[id(t)] = make(t)
    return made


def real_substitutes(walk: ModelWalk) -> dict[int, torch.Tensor]:
    """Clones of every parameter and buffer (``requires_grad`` kept): the forward may write them."""
    def clone(t: torch.Tensor) -> torch.Tensor:
        c = t.detach().clone()
        return c.requires_grad_(True) if t.requires_grad else c
    return dict(substitutes(walk.tensors(), clone))      # fresh clones each run: nothing to keep


def shadow(walk: ModelWalk, tensors: dict[int, torch.Tensor]) -> ModelWalk:
    """A copy of the walked model's module tree running on ``tensors`` (id(original) →
    stand-in), as the walk of the copy (``.model``). The copy's hook dicts are its own, but a
    hook's ``RemovableHandle`` points at the original's dict: a hook that removes itself would
    remove itself from the user's module. So every non-empty hook dict of the original is kept
    too, in the walk's ``hooks_kept`` ((original dict, its items) pairs), for
    :func:`restore_hooks` after the run. A bound method of a module of the tree kept as an
    attribute (``self.forward = self.forward_slicing``) is bound to that module's copy."""
    memo: dict[int, nn.Module] = {}
    pending: list[nn.Module] = []

    def copy_of(m: nn.Module) -> nn.Module:          # made empty now, filled from ``pending``
        new = memo.get(id(m))
        if new is None:
            new = memo[id(m)] = object.__new__(type(m))
            pending.append(m)
        return new

    copy_of(walk.model)
    get, copied = tensors.get, _COPIED
    kept: list[tuple[dict, dict]] = []
    tree: set[int] | None = None                 # ids of the tree's modules, read when first needed
    while pending:                               # a loop, not a recursion: trees can be deep
        m = pending.pop()
        attrs = m.__dict__.copy()
        for k, v in attrs.items():
            kind = type(v)
            if kind in copied:
                if k in _REMADE:
                    continue
                attrs[k] = v.copy()
                if v and "hooks" in k:
                    kept.append((v, v.copy()))
            elif kind is MethodType and isinstance(v.__self__, nn.Module):
                # a method of a module of the tree kept as an attribute (timm's fasternet sets
                # ``self.forward = self.forward_slicing``): bound to that module's copy instead
                if tree is None:
                    tree = {id(x) for _, x in walk.modules()}
                if id(v.__self__) in tree:
                    attrs[k] = MethodType(v.__func__, copy_of(v.__self__))
        attrs["_parameters"] = {k: None if p is None else get(id(p), p) for k, p in m._parameters.items()}
        buffers = m._buffers
        attrs["_buffers"] = {k: None if b is None else get(id(b), b) for k, b in buffers.items()} if buffers else {}
        attrs["_modules"] = {k: None if c is None else copy_of(c) for k, c in m._modules.items()}
        if type(m).__name__ == "OptimizedModule" and "_orig_mod" in m._modules:
            # torch.compile keeps a wrapped bound method of the *user's* module as its forward:
            # the shadow calls its own copy of that module, eagerly
            attrs["forward"] = attrs["_modules"]["_orig_mod"].__call__
            attrs.pop("_forward", None)
        new = memo[id(m)]
        _SET_DICT(new, "__dict__", attrs)      # the copy's own dict, as made (nn.Module's __setattr__ bypassed)
        for slot in _slots(type(m)):           # attributes kept in slots, not in the dict
            try:
                v = slot.__get__(m)
            except AttributeError:             # an empty slot
                continue
            slot.__set__(new, get(id(v), v) if isinstance(v, torch.Tensor) else v)
    copy = walk.mapped(memo[id(walk.model)], memo)
    copy.hooks_kept = kept
    return copy


def restore_hooks(kept: list[tuple[dict, dict]]) -> None:
    """Put back the user's hook dicts a run changed (:func:`shadow`)."""
    for original, items in kept:
        if isinstance(original, dict):
            if original.keys() != items.keys():
                original.clear()
                original.update(items)
        elif len(original) != len(items) or any(a is not b for a, b in zip(original, items)):
            original[:] = items         # a list named like one (transformers' _require_grads_hooks)

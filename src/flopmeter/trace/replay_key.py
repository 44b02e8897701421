"""The key of a module call, for module replay (:mod:`.replay`): the class, attributes,
parameters and buffers of a module and its submodules, and the call's inputs, as a hashable
value that is equal for two calls only when they are the same computation — and the
watched ``layer_idx`` that lets decoder layers differing only in it replay each other."""

from __future__ import annotations

import enum
import os
import sys
import types
from collections import OrderedDict, defaultdict
from operator import is_

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

from .walk import ModelWalk


class Unsafe(Exception):
    """This call cannot be replayed (the reason is the message)."""


# -- watching layer_idx ---------------------------------------------------------------

_CACHE_FILE = os.path.join("transformers", "cache_utils.py")


class Uses:
    """How many Python uses of a watched ``layer_idx`` were seen (outside the cache)."""

    __slots__ = ("n",)

    def __init__(self):
        self.n = 0


class Watched(int):
    """A shadow module's ``layer_idx``: an int that notes every Python use of it made outside
    ``transformers.cache_utils`` in ``log`` (its value and behaviour are those of the int)."""

    def _used(self):
        frame = sys._getframe(2)
        if not frame.f_code.co_filename.endswith(_CACHE_FILE):
            self.log.n += 1


def _watching(name):
    base = getattr(int, name)

    def method(self, *args):
        Watched._used(self)
        return base(self, *args)
    method.__name__ = name
    return method


for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__add__",
              "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__mod__", "__rmod__", "__floordiv__",
              "__rfloordiv__", "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
              "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lshift__", "__rlshift__",
              "__rshift__", "__rrshift__", "__index__", "__int__", "__float__", "__format__", "__str__", "__repr__",
              "__divmod__", "__rdivmod__", "__invert__", "__round__", "__trunc__", "__floor__", "__ceil__"):
    setattr(Watched, _name, _watching(_name))


# -- canonical values ---------------------------------------------------------------

_PLAIN = frozenset({type(None), bool, int, float, str, bytes, complex, torch.dtype, torch.device, torch.layout,
                    torch.memory_format, type(Ellipsis), slice, range})
_MODULE_KEYS = frozenset(vars(nn.Module()).keys()) | {"forward"}
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
LAYER_IDX = ("layer_idx",)


_CONTAINERS = frozenset({tuple, list, torch.Size, dict, OrderedDict, defaultdict, set, frozenset})
_BY_ID = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)


def _canon(v, ctx, depth=0):
    # the kind of a value is read off its type (issubclass), not isinstance: isinstance asks an
    # object that is none of these kinds for its ``__class__``, which a transformers
    # configuration answers through two Python-level ``__getattribute__`` overrides
    t = type(v)
    if t is str or v is None:
        return v
    if t is Watched:
        ctx.idx.add(int.__index__(v))
        return LAYER_IDX
    if t in _PLAIN:
        return (t, v)
    if t is tuple or t is list or t is torch.Size:
        return (t, tuple([_canon(x, ctx, depth) for x in v]))
    if t is dict or t is OrderedDict or t is defaultdict:
        return (t, tuple([(k if type(k) is str else _canon(k, ctx, depth), _canon(x, ctx, depth)) for k, x in v.items()]))
    if t is set or t is frozenset:
        return (t, frozenset([_canon(x, ctx, depth) for x in v]))
    if issubclass(t, enum.Enum):
        return (t, v)
    if issubclass(t, torch.Tensor):
        return ("tensor", id(v))
    if issubclass(t, nn.Module):
        return _hidden_module(v, ctx, depth)
    if issubclass(t, _BY_ID):
        return ("id", id(v))
    done = ctx.objects.get(id(v))
    if done is not None:
        return done
    state = getattr(v, "__dict__", None)
    if depth >= 1 or not isinstance(state, dict):
        out = ("id", id(v))
    elif ctx.shared is not None:
        out = _shared_object(v, state, ctx)
    else:
        out = ("obj", id(v), tuple([(k, _canon(x, ctx, 1)) for k, x in state.items()]))
    ctx.objects[id(v)] = out
    return out


def _by_identity(v) -> bool:
    """Whether ``_canon(v, ctx, 1)`` depends on nothing but which object ``v`` is: it reads no
    state of ``v`` and notes nothing in ``ctx`` (the branches of :func:`_canon`, in its order)."""
    t = type(v)
    if t is str or v is None:
        return True
    if t is Watched:
        return False
    if t in _PLAIN:
        return True           # immutable; the key holds the object itself
    if t in _CONTAINERS:
        return False
    if issubclass(t, (enum.Enum, torch.Tensor)):
        return True
    return not issubclass(t, nn.Module) and issubclass(t, _BY_ID)


def _shared_object(v, state: dict, ctx) -> tuple:
    """``_canon`` of a plain object at depth 0, kept across the key computations of one run in
    ``ctx.shared`` — the object many blocks hold (every layer of a Hugging Face model holds the
    same configuration, whose walk is a quarter of a decoder layer's key). A kept key is used
    only while the object's ``__dict__`` has the same keys, in the same order, bound to the very
    same objects (checked by identity: the entry holds them, so their ids are not reused), and
    the attributes whose part of the key reads more than their identity (containers, modules,
    other objects, a watched ``layer_idx``) are walked again each time; a change anywhere
    makes the key anew."""
    entry = ctx.shared.get(id(v))
    if (entry is not None and entry[0] is v and len(state) == len(entry[1])
            and all(map(is_, state, entry[1])) and all(map(is_, state.values(), entry[2]))):
        out, deep = entry[3], entry[4]
        if not deep:
            return out
        items = out[2]
        fresh = [(pos, _canon(entry[2][pos], ctx, 1)) for pos in deep]
        if all(items[pos][1] == part for pos, part in fresh):
            return out
        items = list(items)
        for pos, part in fresh:
            items[pos] = (items[pos][0], part)
        out = ("obj", id(v), tuple(items))
        entry[3] = out
        return out
    keys, values = tuple(state), tuple(state.values())
    out = ("obj", id(v), tuple([(k, _canon(x, ctx, 1)) for k, x in zip(keys, values)]))
    deep = tuple(pos for pos, x in enumerate(values) if not _by_identity(x))
    ctx.shared[id(v)] = [v, keys, values, out, deep]
    return out


def _hidden_module(m: nn.Module, ctx, depth):
    """A module kept as a plain attribute (outside the module tree), keyed by value when it holds
    no state: no parameters, buffers, submodules or hooks (the kernel-function wrappers that
    ``kernels.use_kernelized_func`` gives each Hugging Face attention layer). A module with state
    could differ between two calls in ways the key would not see, so it is refused."""
    d = m.__dict__
    if d["_parameters"] or d["_buffers"] or d["_modules"] or any(d.get(h) for h in _HOOKS):
        raise Unsafe("a module with state kept as a plain attribute")
    if depth >= 2:
        raise Unsafe("a module kept as a plain attribute, nested")
    done = ctx.objects.get(id(m))
    if done is not None:
        return done
    out = ("module", type(m), d["training"],
           tuple([(k, _canon(d[k], ctx, depth + 1)) for k in sorted(d.keys() - _MODULE_KEYS)]))
    ctx.objects[id(m)] = out
    return out


class _Ctx:
    """What one key computation notes: the ``layer_idx`` values met, the objects keyed so far
    (by id), the subtree's tensors by relative name; ``shared``: the run's keys of plain objects
    (:func:`_shared_object`), or None to walk every object afresh."""
    __slots__ = ("idx", "objects", "shared", "tensors")

    def __init__(self, shared: dict | None = None):
        self.idx: set[int] = set()
        self.objects: dict[int, tuple] = {}
        self.shared = shared
        self.tensors: dict[str, torch.Tensor] = {}      # relative name → parameter or buffer


def _tmeta(t: torch.Tensor | None):
    if t is None:
        return None
    if type(t) is not FakeTensor and not isinstance(t, nn.Parameter):
        raise Unsafe("a real tensor")
    return (type(t), tuple(t.shape), t.stride(), t.storage_offset(), t.dtype, t.device, t.requires_grad)


def subtree_key(module: nn.Module, ctx: _Ctx) -> tuple:
    """The module's class, attributes, parameters and buffers, and those of its submodules."""
    out = []
    slots: dict[int, int] = {}
    named = ctx.tensors
    for rel, m in ModelWalk(module).modules():
        d = m.__dict__
        for h in _HOOKS:
            if d.get(h):
                raise Unsafe("a hook on the module")
        attrs = tuple([(k, _canon(d[k], ctx)) for k in sorted(d.keys() - _MODULE_KEYS)])
        tensors = []
        for group in (d["_parameters"], d["_buffers"]):
            for k, t in group.items():
                if t is None:
                    tensors.append((k, None, None))
                    continue
                tensors.append((k, slots.setdefault(id(t), len(slots)), _tmeta(t)))
                named.setdefault(f"{rel}.{k}" if rel else k, t)
        out.append((rel, type(m), d["training"], attrs, tuple(tensors), tuple(d["_modules"])))
    return tuple(out)


def _is_cache(v) -> bool:
    t = type(v)
    return t.__name__ == "DynamicCache" and t.__module__ == "transformers.cache_utils"


class _Inputs:
    """A call's arguments, walked: their key, the tensors in order, the cache arguments. (A class,
    not a recursive closure: the garbage collector is off during a run, and a closure's cycle
    would keep the input tensors alive.)"""

    def __init__(self):
        self.tensors: list[torch.Tensor] = []
        self.seen: dict[int, int] = {}
        self.storages: dict[int, int] = {}
        self.caches: list = []

    def walk(self, v):
        t = type(v)
        if t is str or v is None:
            return v
        if t in _PLAIN:
            return (t, v)
        if isinstance(v, torch.Tensor):
            slot = self.seen.get(id(v))
            if slot is not None:
                return ("T", slot)
            if t is not FakeTensor or getattr(v, "constant", None) is not None:
                raise Unsafe("an input that is a real tensor or carries values")
            slot = self.seen[id(v)] = len(self.tensors)
            self.tensors.append(v)
            st = v.untyped_storage()
            sslot = self.storages.setdefault(st._cdata, len(self.storages))
            return ("T", slot, sslot, tuple(v.shape), v.stride(), v.storage_offset(), v.dtype, v.device,
                    v.requires_grad, st.nbytes())
        if t is tuple or t is list or isinstance(v, tuple) and hasattr(v, "_fields"):
            return (t, tuple([self.walk(x) for x in v]))
        if t is dict:
            return (t, tuple([(k, self.walk(x)) for k, x in v.items()]))
        if isinstance(v, enum.Enum):
            return (t, v)
        if _is_cache(v):
            self.caches.append(v)
            return ("cache", len(self.caches) - 1)
        raise Unsafe(f"an argument of type {t.__name__}")


def input_key(args, kwargs):
    """(key, input tensors in order, cache arguments) of a call's arguments."""
    walker = _Inputs()
    key = (walker.walk(args), walker.walk(kwargs))
    if len(walker.caches) > 1:
        raise Unsafe("more than one cache argument")
    return key, walker.tensors, walker.caches

"""Module replay: a repeated module call is re-emitted from an earlier, identical one.

A model made of N equal blocks (transformer layers, ResNet bottlenecks) runs the same
computation N times. On fake tensors the computation is metadata only, so when a module call
is provably the same as one recorded earlier, its events, tensor references, storages with
their lifetimes and the module-table entries of its submodules are copied from that call
(ids, storages and module paths shifted) instead of running the forward again; its outputs
are new fake tensors of the recorded shapes, strides and storages. The trace comes out equal
to the full run's, so every report is the same (tested against ``FLOPMETER_REPLAY=0``).

**The key** of a call (:mod:`.replay_key`, computed at call time, on the shadow module): the class, every plain
attribute (by value; containers recursed; other objects by identity plus their attributes one
level down), the parameters' and buffers' shapes, strides, dtypes, devices and
``requires_grad`` of the module and all its submodules, their tree, and the call's inputs —
each tensor's metadata, which inputs are the same tensor or share a storage, and every
non-tensor argument by value. Grad mode must be off and autocast too (inference on fake
tensors only; real mode and training steps always run in full).

**Refused** (the call runs in full, and is tried again at the next call): forward hooks on
the module or a submodule; any change of the subtree's attributes, parameters or buffers
during the call; an in-place op on a tensor the call did not create (an input, a parameter,
a buffer); a random op or one that reads values (``item``, ``nonzero``, …); an input that is
a real tensor or a fake one carrying a constant; a tensor used that is neither an input nor
the subtree's own; a tensor created in the call that outlives it other than through its
outputs (state kept somewhere) — except one kind of write that is understood:
**Hugging Face's ``DynamicCache``**, where a layer stores its keys and values in the slot of
its ``layer_idx``. Modules differing only in ``layer_idx`` replay each other when (1) the
recorded call used ``layer_idx`` only inside ``transformers.cache_utils`` (every Python use of
it is watched, on the shadow only) and (2) a second call, at another ``layer_idx``, recorded in
full, came out the same (shifted) — so a value of it reaching an op in C is caught too; the
cache write is then repeated into the new slot. Module calls inside a call being recorded are
not replayed (one level at a time); a call whose key is refused runs its children normally.

``FLOPMETER_REPLAY=0`` turns replay off. ``trace.extra["replay"]`` counts the calls replayed,
recorded and refused (with reasons).
"""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from torch import nn
from torch.nn.modules import module as module_mod
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

from .emit import Compiled, clone
from ..errors import env_int
from .replay_key import _PLAIN, Unsafe, Uses, Watched, _canon, _Ctx, input_key, subtree_key
from .events import OpEvent, TensorRef
from .model import StorageInfo

ENV = "FLOPMETER_REPLAY"
# replay pays where a block repeats many times (transformer layers); keying the calls of a
# block with a few twins (a CNN's stages) costs more than replaying saves (measured: 1.2-1.5x
# the count of densenet121, efficientnet_b0, mobilenet_v3_small with every twin a candidate)
MIN_TWINS = 8            # FLOPMETER_REPLAY_MIN_TWINS overrides it (the tests use small models)
_GLOBAL_HOOKS = (module_mod._global_forward_pre_hooks, module_mod._global_forward_hooks)


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# -- what a recorded call did ---------------------------------------------------------

_RANDOM = ("rand", "bernoulli", "normal", "uniform", "dropout", "multinomial", "exponential", "cauchy", "geometric",
           "poisson", "random")
_VALUES = frozenset({"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.nonzero_static", "aten.equal",
                     "aten.is_nonzero", "aten.masked_select", "aten.unique", "aten._unique", "aten._unique2",
                     "aten.unique_consecutive", "aten.unique_dim", "aten.bincount", "aten.allclose",
                     "aten._assert_async", "aten.repeat_interleave", "aten.argwhere", "aten.histc"})
_WRITES: dict[tuple[str, str], tuple[str, ...] | None] = {}


def written_args(op: str, overload: str) -> tuple[str, ...] | None:
    """The names of the arguments an op writes (from its schema); None when unknown."""
    key = (op, overload)
    if key not in _WRITES:
        try:
            ns, name = op.split(".", 1)
            schema = getattr(getattr(getattr(torch.ops, ns), name), overload)._schema
            _WRITES[key] = tuple(a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write)
        except (AttributeError, ValueError, RuntimeError):
            _WRITES[key] = None
    return _WRITES[key]


def _refs_in(value, out: list) -> None:
    t = type(value)
    if t is TensorRef:
        out.append(value)
    elif t is tuple or t is list:
        for v in value:
            _refs_in(v, out)
    elif t is dict:
        for v in value.values():
            _refs_in(v, out)
    elif t in _PLAIN or t is str or value is CACHE_ARG:
        pass
    else:
        raise Unsafe(f"a {t.__name__} kept in the trace")


class Template:
    """One module call recorded in full: what replaying it must re-emit."""

    def __init__(self):
        self.events: list[OpEvent] = []
        self.ext: dict[int, tuple] = {}          # tensor id → ("in", k) | ("p", relname)
        self.ext_storage: dict[int, tuple] = {}  # storage id → the same kind of slot
        self.tbase = self.sbase = self.start = self.depth = 0
        self.n_tensors = 0
        self.storages: list[tuple] = []          # (nbytes, created - start, freed - start | None, device)
        self.modules: list[tuple] = []           # (relpath, calls, outputs, inputs) of the submodules
        self.output = None                       # the output structure (leaves: slots)
        self.held: list[TensorRef] = []          # the tensors it leaves alive (outputs, cache), as last seen
        self.idx: int | None = None              # the layer_idx it was recorded at
        self.idx_used = False                    # layer_idx used outside the cache
        self.confirmed = False                   # a second call at another layer_idx came out the same
        self.cache: tuple | None = None          # (layer type, its state before, the cache's, [(attr, value)])
        self.prefix = ""
        self.call0: dict[str, int] = {}          # relpath → its call count before the call
        self.relax_refused = False
        self._compiled: Compiled | None = None

    def normal(self) -> tuple:
        """The call with every id relative: two templates of the same computation are equal."""
        def ref(r):
            if r.id in self.ext:
                return self.ext[r.id]
            return (r.id - self.tbase, self._sid(r.storage), r.shape, r.stride, r.offset, r.dtype, r.device,
                    r.requires_grad, r.role)

        def walk(v):
            t = type(v)
            if t is TensorRef:
                return ref(v)
            if t is tuple or t is list:
                return (t, tuple(walk(x) for x in v))
            if t is dict:
                return (t, tuple((k, walk(x)) for k, x in v.items()))
            return (t, v)
        evs = tuple((e.op, e.overload, walk(e.args), walk(e.kwargs), walk(e.out), self.rel(e.module),
                     tuple((self.rel(p), i - self.call0.get(self.rel(p), 0)) for p, i in e.stack[self.depth:]),
                     e.phase) for e in self.events)
        mods = tuple((rel, n, walk(o), walk(i)) for rel, n, o, i in self.modules)
        cache = None if self.cache is None else (self.cache[0], self.cache[1], self.cache[2],
                                                 tuple((k, kind, v if kind == "v" else walk(v))
                                                       for k, kind, v in self.cache[3]))
        held = tuple(ref(r) for r in self.held)
        return evs, tuple(self.storages), mods, walk(self.output), held, cache, self.n_tensors

    def compiled(self) -> Compiled:
        """The events as a generated function, and the new references a replay makes
        (``spec``: template ref, id offset, input slot of its storage or None, storage offset)."""
        if self._compiled is None:
            self.slots = sorted(set(self.ext.values()) | set(self.ext_storage.values()))
            slot_no = {slot: k for k, slot in enumerate(self.slots)}
            self.spec, self.rindex = [], {}

            def index(r: TensorRef):
                slot = self.ext.get(r.id)
                if slot is not None:
                    return ("X", slot_no[slot])
                k = self.rindex.get(id(r))
                if k is None:
                    k = self.rindex[id(r)] = len(self.spec)
                    sslot = self.ext_storage.get(r.storage)
                    self.spec.append((r, r.id - self.tbase, None if sslot is None else slot_no[sslot],
                                      r.storage - self.sbase))
                return ("R", k)
            self.index = index
            compiled = Compiled(self.events, index)
            for _, _, outs, ins in self.modules:
                _refs_in((outs, ins), found := [])
                for r in found:
                    index(r)
            for r in self.held:
                index(r)
            # what every replay of it reads, worked out once: the parameter slots to look up, the
            # slots' positions, and the module paths and stacks as suffixes of the call's path
            cut = len(self.prefix)
            self.param_slots = [slot for slot in self.slots if slot[0] == "p"]
            self.slot_no = slot_no
            self.path_tails = [p[cut:] for p in compiled.paths]
            self.stack_tails = [tuple((p[cut:], p[cut + 1:], i) for p, i in s[self.depth:]) for s in compiled.stacks]
            self._compiled = compiled
        return self._compiled

    def _sid(self, sid: int):
        return self.ext_storage.get(sid, sid - self.sbase)

    def rel(self, path: str) -> str:
        if path == self.prefix:
            return ""
        return path[len(self.prefix) + 1:] if self.prefix else path


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}.{rel}" if prefix and rel else prefix or rel


def _tensors_of(module: nn.Module) -> dict[int, tuple[str, torch.Tensor]]:
    """id → (relative name, tensor) of the parameters and buffers of a module and its submodules."""
    out: dict[int, tuple[str, torch.Tensor]] = {}
    for rel, m in module.named_modules():
        for group in (m._parameters, m._buffers):
            for k, t in group.items():
                if t is not None and id(t) not in out:
                    out[id(t)] = (_join(rel, k), t)
    return out


def _tensor_named(module: nn.Module, name: str) -> torch.Tensor:
    rel, _, leaf = name.rpartition(".")
    m = module.get_submodule(rel) if rel else module
    t = m._parameters.get(leaf)
    return m._buffers[leaf] if t is None else t


def _cache_state(cache) -> tuple:
    """(the cache's own attributes, each layer's type and attributes), canonical."""
    ctx = _Ctx()
    own = _canon({k: v for k, v in cache.__dict__.items() if k != "layers"}, ctx)
    return own, [(type(layer), _canon(layer.__dict__, ctx)) for layer in cache.layers]


class _CacheArg:
    """Stands, in a recorded call's module inputs, for the cache argument of the call."""


CACHE_ARG = _CacheArg()


def _walk(value, fn, cache=None):
    """``value`` with each TensorRef replaced by ``fn(ref)`` and :data:`CACHE_ARG` by ``cache``."""
    t = type(value)
    if t is TensorRef:
        return fn(value)
    if t is tuple:
        return tuple(_walk(v, fn, cache) for v in value)
    if t is list:
        return [_walk(v, fn, cache) for v in value]
    if t is dict:
        return {k: _walk(v, fn, cache) for k, v in value.items()}
    return cache if value is CACHE_ARG else value


def _swap(value, old):
    """``value`` with the object ``old`` replaced by :data:`CACHE_ARG`."""
    t = type(value)
    if value is old:
        return CACHE_ARG
    if t is tuple or t is list:
        return t(_swap(v, old) for v in value)
    if t is dict:
        return {k: _swap(v, old) for k, v in value.items()}
    return value


class Replayer:
    """Records repeated module calls once and replays the later ones (see the module docstring)."""

    def __init__(self, recording, refs, stack, mode):
        self.recording, self.refs, self.stack, self.mode = recording, refs, stack, mode
        self.templates: dict[tuple, Template] = {}
        self.refused: dict[tuple, str] = {}
        self.depth = 0
        self.uses = Uses()                       # Python uses of a watched layer_idx (outside the cache)
        self.replayed = self.recorded = 0
        self.by_type: dict[str, int] = defaultdict(int)     # replayed calls per module class
        self.reasons: dict[str, int] = defaultdict(int)
        self._devices: dict[str, torch.device] = {}
        self.spans: list[tuple[int, int, int]] = []      # (start, length, source) of each replayed call
        self.wrapped: list[nn.Module] = []       # the shadow's modules install() routed through call()
        self.shared: dict[int, list] = {}        # keys of plain objects the blocks share (replay_key._shared_object)

    def stats(self) -> dict:
        return {"replayed": self.replayed, "recorded": self.recorded, "refused": sum(self.reasons.values()),
                "reasons": dict(self.reasons), "replayed_by_type": dict(self.by_type)}

    def _refuse(self, reason: str) -> None:
        self.reasons[reason] += 1

    # -- installing on the shadow ------------------------------------------------------
    def install(self, mods: list[tuple[str, nn.Module]]) -> None:
        """Route the forward of every module of the shadow (its ``named_modules()`` pairs) that
        has a structural twin (same class, parameter and buffer shapes, submodule tree) through
        :meth:`call`."""
        min_twins = env_int("FLOPMETER_REPLAY_MIN_TWINS", MIN_TWINS, "twins", MIN_TWINS)
        sig_of: dict[int, int] = {}
        interned: dict[tuple, int] = {}
        counts: dict[int, int] = defaultdict(int)
        classes: dict[type, int] = defaultdict(int)
        blocks: dict[type, int] = defaultdict(int)      # instances with submodules, per class
        for _, m in mods:
            classes[type(m)] += 1
            if m.__dict__["_modules"]:
                blocks[type(m)] += 1
        if not any(n >= min_twins for n in blocks.values()):
            return                             # no block class repeats enough: nothing to replay
        for _, m in reversed(mods):            # submodules before their parents
            d = m.__dict__
            idx = d.get("layer_idx")
            if type(idx) is int:
                w = d["layer_idx"] = Watched(idx)
                w.log = self.uses
            if classes[type(m)] < 2:           # no twin: a signature of its own
                sig = sig_of[id(m)] = -len(sig_of) - 1
                counts[sig] = 1
                continue
            shape = (type(m), tuple([(k, None if t is None else (t.shape, t.dtype)) for k, t in d["_parameters"].items()]),
                     tuple([(k, None if t is None else (t.shape, t.dtype)) for k, t in d["_buffers"].items()]),
                     tuple([(k, sig_of.get(id(c))) for k, c in d["_modules"].items()]))
            sig = sig_of[id(m)] = interned.setdefault(shape, len(interned))
            counts[sig] += 1
        for name, m in mods[1:]:
            if not m.__dict__["_modules"]:     # a layer without submodules: a few ops, which the dispatch
                continue                       # memo already makes cheap; keying every call costs more
            if counts[sig_of[id(m)]] < min_twins or "forward" in m.__dict__ or isinstance(m, torch.jit.ScriptModule):
                continue
            m.__dict__["forward"] = self._wrapper(m, name)
            self.wrapped.append(m)

    def uninstall(self) -> None:
        """Take the forwards :meth:`install` put on the shadow's modules off again. Each one holds
        its module (a reference cycle): without them the shadow is freed as soon as the run drops
        it, not by the cyclic collector's next pass over everything the count made."""
        for m in self.wrapped:
            m.__dict__.pop("forward", None)
        self.wrapped.clear()

    def _wrapper(self, module: nn.Module, path: str):
        forward = type(module).forward.__get__(module)

        def forward_or_replay(*args, **kwargs):
            if (self.depth or self.stack.current != path or torch.is_grad_enabled()
                    or torch._C._is_any_autocast_enabled() or self.recording.phase != "forward"):
                return forward(*args, **kwargs)
            return self.call(module, path, forward, args, kwargs)
        return forward_or_replay

    # -- one call ----------------------------------------------------------------------
    def call(self, module, path, forward, args, kwargs):
        if _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1]:     # a user's global hook would see the skipped calls
            self._refuse("a global module hook")
            return forward(*args, **kwargs)
        try:
            ctx = _Ctx(self.shared)
            tree = subtree_key(module, ctx)
            inputs, tensors, caches = input_key(args, kwargs)
        except Unsafe as exc:
            self._refuse(str(exc))
            return forward(*args, **kwargs)
        idx = next(iter(ctx.idx)) if len(ctx.idx) == 1 else None
        key = (tree, inputs, tuple(sorted(ctx.idx)) if len(ctx.idx) > 1 else None)
        tpl = self.templates.get(key)
        if tpl is None:
            if key in self.refused:
                self._refuse(self.refused[key])
                return forward(*args, **kwargs)
            out, tpl, reason = self.record(module, path, forward, args, kwargs, tree, tensors, caches, idx)
            if tpl is None:
                self.refused[key] = reason
                self._refuse(reason)
            else:
                self.templates[key] = tpl
            return out
        if tpl.idx != idx:
            if tpl.idx_used or tpl.relax_refused:
                self._refuse("layer_idx used outside the cache" if tpl.idx_used else "calls at two layer_idx differ")
                return forward(*args, **kwargs)
            if not tpl.confirmed:
                out, other, reason = self.record(module, path, forward, args, kwargs, tree, tensors, caches, idx)
                if other is not None and not other.idx_used and other.normal() == tpl.normal():
                    tpl.confirmed = True
                else:
                    tpl.relax_refused = True
                    self._refuse(reason or "calls at two layer_idx differ")
                return out
        done, out = self.replay(tpl, ctx.tensors, path, args, tensors, caches, idx)
        if not done:
            return forward(*args, **kwargs)
        self.by_type[type(module).__name__] += 1
        return out

    # -- recording a call in full -------------------------------------------------------
    def record(self, module, path, forward, args, kwargs, tree, tensors, caches, idx):
        """Run the call in full; (its output, its Template or None, why not)."""
        rec, refs, stack = self.recording, self.refs, self.stack
        pre = [refs.id_of(t) for t in tensors]
        own = _tensors_of(module)
        own_refs = {name: refs.id_of(t) for name, t in own.values()}
        subs = list(module.named_modules())
        if any(r is None for r in pre) or any(r is None for r in own_refs.values()):
            self.depth += 1
            try:
                return forward(*args, **kwargs), None, "a tensor the run has not seen"
            finally:
                self.depth -= 1
        shared = any(stack.names.get(id(m)) != _join(path, rel) for rel, m in subs)
        desc = [_join(path, rel) for rel, _ in subs[1:]]
        before = {p: (stack.calls.get(p, 0), len(stack.outputs.get(p, ())), len(stack.inputs.get(p, ()))) for p in desc}
        cache_before = [_cache_state(c) for c in caches]
        entry = stack.stack
        start, tbase, sbase, uses = len(rec.events), refs._next_tensor, len(refs.storages), self.uses.n
        self.depth += 1
        try:
            out = forward(*args, **kwargs)
        finally:
            self.depth -= 1
        try:
            if shared:
                raise Unsafe("a submodule shared with another part of the model")
            tpl = Template()
            tpl.prefix, tpl.idx, tpl.idx_used, tpl.depth = path, idx, self.uses.n != uses, len(entry)
            tpl.start, tpl.tbase, tpl.sbase = start, tbase, sbase
            tpl.call0 = {p[len(path) + 1:]: c for p, (c, _, _) in before.items()}
            self._check_state(module, tree, own, tensors, tpl)
            self._fill(tpl, module, path, out, tensors, own_refs, pre, entry, before, caches, cache_before)
        except Unsafe as exc:
            return out, None, str(exc)
        self.recorded += 1
        return out, tpl, None

    def _check_state(self, module, tree, own, tensors, tpl) -> None:
        ctx = _Ctx()
        if subtree_key(module, ctx) != tree or (tpl.idx is not None and ctx.idx != {tpl.idx}):
            raise Unsafe("the call changed the module's attributes")
        if _tensors_of(module).keys() != own.keys():
            raise Unsafe("the call replaced a parameter or buffer")

    def _fill(self, tpl, module, path, out, tensors, own_refs, pre, entry, before, caches, cache_before) -> None:
        rec, refs, stack = self.recording, self.refs, self.stack
        end = len(rec.events)
        tpl.events = rec.events[tpl.start:end]
        ext_obj = {}
        for k, r in enumerate(pre):
            tpl.ext.setdefault(r.id, ("in", k))
            tpl.ext_storage.setdefault(r.storage, ("in", k))
            ext_obj.setdefault(r.id, r)
        for name, r in own_refs.items():
            tpl.ext.setdefault(r.id, ("p", name))
            tpl.ext_storage.setdefault(r.storage, ("p", name))
            ext_obj.setdefault(r.id, r)
        tpl.n_tensors = refs._next_tensor - tpl.tbase
        nstor = len(refs.storages) - tpl.sbase

        def check(r: TensorRef) -> None:
            if r.id in ext_obj:
                if r is not ext_obj[r.id]:
                    raise Unsafe("the call changed an input")
                return
            if not tpl.tbase <= r.id < tpl.tbase + tpl.n_tensors:
                raise Unsafe("the call used a tensor that is neither an input nor its own")
            if r.storage not in tpl.ext_storage and not tpl.sbase <= r.storage < tpl.sbase + nstor:
                raise Unsafe("the call used a storage that is neither an input's nor its own")

        for ev in tpl.events:
            if ev.op in _VALUES or any(word in ev.op for word in _RANDOM):
                raise Unsafe("a random op or one that reads values")
            if ev.phase != "forward" or ev.stack[:tpl.depth] != entry:
                raise Unsafe("an op outside the call's module stack")
            writes = written_args(ev.op, ev.overload)
            if writes is None:
                raise Unsafe("an op without a schema")
            for name in writes:
                hit: list = []
                _refs_in(ev.arg(name), hit)
                for r in hit:
                    if r.storage < 0 or r.storage in tpl.ext_storage or r.storage < tpl.sbase:
                        raise Unsafe("an in-place write to a tensor the call did not create")
            found: list = []
            _refs_in((ev.args, ev.kwargs, ev.out), found)
            for r in found:
                check(r)
        for p, (c0, o0, i0) in before.items():
            n = stack.calls.get(p, 0) - c0
            outs, ins = list(stack.outputs.get(p, ())[o0:]), list(stack.inputs.get(p, ())[i0:])
            if caches:
                outs, ins = _swap(outs, caches[0]), _swap(ins, caches[0])
            if n or outs or ins:
                found = []
                _refs_in((outs, ins), found)
                for r in found:
                    check(r)
                tpl.modules.append((p[len(path) + 1:], n, outs, ins))

        held: dict[int, int] = {}
        inputs = {id(t): k for k, t in enumerate(tensors)}
        params = {id(t): name for name, t in ((n, _tensor_named(module, n)) for n in own_refs)}

        def leaf(t: torch.Tensor):
            if id(t) in inputs:
                return ("in", inputs[id(t)])
            if id(t) in params:
                return ("p", params[id(t)])
            if type(t) is not FakeTensor or t.requires_grad:
                raise Unsafe("an output that is not a plain fake tensor")
            if id(t) not in held:
                r = refs.id_of(t)
                if r is None:
                    raise Unsafe("an output the run has not seen")
                check(r)
                if r.id in ext_obj:
                    raise Unsafe("an output that is an input under another name")
                held[id(t)] = len(tpl.held)
                tpl.held.append(r)
            return ("held", held[id(t)])

        def structure(v):
            t = type(v)
            if isinstance(v, torch.Tensor):
                return leaf(v)
            if t is tuple or t is list:
                return (t, [structure(x) for x in v])
            if t is dict:
                return (t, [(k, structure(x)) for k, x in v.items()])
            if t in _PLAIN or t is str:
                return ("v", v)
            raise Unsafe(f"an output of type {t.__name__}")
        tpl.output = structure(out)
        del structure                           # the recursive closure's cycle (the collector is off)
        if caches:
            tpl.cache = self._cache_write(tpl, caches[0], cache_before[0], leaf)

        alive = {r.storage for r in tpl.held}
        by_storage: dict[int, TensorRef] = {}
        for r in tpl.held:
            first = by_storage.setdefault(r.storage, r)
            if first.dtype != r.dtype or r.storage in tpl.ext_storage and not self._viewable(r, tpl, tensors, module):
                raise Unsafe("outputs that share a storage in different dtypes")
        for sid in range(tpl.sbase, tpl.sbase + nstor):
            info = refs.storages[sid]
            if not tpl.start <= info.created <= end:
                raise Unsafe("a storage made outside the call")
            if info.freed is None and sid not in alive:
                raise Unsafe("the call keeps a tensor it made (state written)")
            if info.freed is not None and sid in alive:
                raise Unsafe("an output whose storage was freed")
            r = by_storage.get(sid)
            if r is not None and info.nbytes % r.dtype.itemsize:
                raise Unsafe("an output storage of an odd size")
            tpl.storages.append((info.nbytes, info.created - tpl.start,
                                 None if info.freed is None else info.freed - tpl.start, info.device))

    def _viewable(self, r, tpl, tensors, module) -> bool:
        kind, where = tpl.ext_storage[r.storage]
        base = tensors[where] if kind == "in" else _tensor_named(module, where)
        return base.dtype == r.dtype

    def _cache_write(self, tpl, cache, before, leaf):
        own, layers = before
        own_after, layers_after = _cache_state(cache)
        if own_after != own or len(layers_after) != len(layers):
            raise Unsafe("the call changed the cache other than one layer's keys and values")
        changed = [i for i, (a, b) in enumerate(zip(layers, layers_after)) if a != b]
        if not changed:
            return None
        if changed != [tpl.idx]:
            raise Unsafe("the call wrote a cache layer other than its layer_idx")
        j = tpl.idx
        layer = cache.layers[j]
        writes = []
        old = dict(layers[j][1][1])
        for k, v in layer.__dict__.items():
            if isinstance(v, torch.Tensor):
                writes.append((k, "t", leaf(v)))
            elif type(v) in _PLAIN or type(v) is str:
                writes.append((k, "v", v))
            elif old.get(k) != _canon(v, _Ctx()):
                raise Unsafe("the call wrote an object into the cache")
        return (layers[j][0], layers[j][1], own, tuple(writes))

    # -- replaying a call ---------------------------------------------------------------
    def replay(self, tpl: Template, own, path, args, tensors, caches, idx):
        """Re-emit ``tpl`` for this call; (False, None) when a precondition fails (run it in full)."""
        rec, refs, stack = self.recording, self.refs, self.stack
        now: dict[tuple, TensorRef] = {}
        objects: dict[tuple, torch.Tensor] = {}
        for k, t in enumerate(tensors):
            r = refs.id_of(t)
            if r is None:
                return False, None
            now[("in", k)], objects[("in", k)] = r, t
        comp = tpl.compiled()
        for slot in tpl.param_slots:
            if slot not in now:
                t = own[slot[1]]
                r = refs.id_of(t)
                if r is None:
                    return False, None
                now[slot], objects[slot] = r, t
        layer = None
        if tpl.cache is not None:
            cache = caches[0]
            layer = cache.layers[idx] if idx is not None and 0 <= idx < len(cache.layers) else None
            if layer is None or type(layer) is not tpl.cache[0]:
                return False, None
            ctx = _Ctx()
            if (_canon(layer.__dict__, ctx) != tpl.cache[1]
                    or _canon({k: v for k, v in cache.__dict__.items() if k != "layers"}, ctx) != tpl.cache[2]):
                return False, None

        start, tbase, sbase = len(rec.events), refs._next_tensor, len(refs.storages)
        X = [now[slot] for slot in tpl.slots]
        R = [clone(r, tbase + d, sbase + s if xs is None else X[xs].storage) for r, d, xs, s in tpl.spec]
        ext, rindex, slot_no = tpl.ext, tpl.rindex, tpl.slot_no

        def ref(r: TensorRef) -> TensorRef:
            slot = ext.get(r.id)
            return X[slot_no[slot]] if slot is not None else R[rindex[id(r)]]

        entry, counts = stack.stack, stack.calls
        calls = {rel: counts.get(_join(path, rel), 0) - c for rel, c in tpl.call0.items()}
        S = [entry + tuple([(path + tail, i + calls[rel]) for tail, rel, i in s]) for s in tpl.stack_tails]
        M = [path + tail for tail in tpl.path_tails]
        events = rec.events
        comp.emit(R, X, comp.constants, M, S, events.append, OpEvent)
        refs.replayed(tpl.n_tensors, [StorageInfo(n, created + start, None if freed is None else freed + start, device)
                                      for n, created, freed, device in tpl.storages])
        made = self._make(tpl, ref, objects)
        for rel, n, outs, ins in tpl.modules:
            p = _join(path, rel)
            stack.calls[p] += n
            cache = caches[0] if caches else None
            if outs:
                stack.outputs[p].extend(_walk(o, ref, cache) for o in outs)
            if ins:
                stack.inputs[p].extend(_walk(i, ref, cache) for i in ins)
        refs.events = len(events)
        if layer is not None:
            for k, kind, v in tpl.cache[3]:
                layer.__dict__[k] = self._leaf(v, made, objects) if kind == "t" else v
        if tpl.events:
            self.spans.append((start, len(tpl.events), tpl.start))
        self.replayed += 1
        return True, self._build(tpl.output, made, objects)

    def _leaf(self, leaf, made, objects):
        return made[leaf[1]] if leaf[0] == "held" else objects[leaf]

    def _build(self, node, made, objects):
        kind, value = node
        if kind == "v":
            return value
        if kind in ("held", "in", "p"):
            return self._leaf(node, made, objects)
        items = [(k, self._build(x, made, objects)) for k, x in value] if kind is dict else \
            [self._build(x, made, objects) for x in value]
        return dict(items) if kind is dict else kind(items)

    def _make(self, tpl: Template, ref, objects) -> list[torch.Tensor]:
        """New fake tensors for what the call leaves alive (outputs, cache), with the recorded
        shapes, strides and storages (views of an input's storage where it was one). Made from
        meta tensors, as the fake mode makes them, without an op through the mode."""
        made, bases = [], {}
        mode, refs = self.mode, self.refs
        recording, mode.recording = mode.recording, None        # making them is not an op of the model
        try:
            for r in tpl.held:
                new = ref(r)
                device = self._devices.get(new.device)
                if device is None:
                    device = self._devices[new.device] = torch.device(new.device)
                sslot = tpl.ext_storage.get(r.storage)
                if sslot is not None:
                    t = objects[sslot].as_strided(new.shape, new.stride, new.offset)
                else:
                    with unset_fake_temporarily():
                        nbytes = tpl.storages[r.storage - tpl.sbase][0]
                        base = bases.get(new.storage)
                        if base is None and new.offset == 0:
                            meta = torch.empty_strided(new.shape, new.stride, dtype=new.dtype, device="meta")
                            if meta.untyped_storage().nbytes() != nbytes:
                                meta = None
                        else:
                            meta = None
                        if meta is None:
                            if base is None:
                                base = bases[new.storage] = torch.empty(nbytes // new.dtype.itemsize, dtype=new.dtype,
                                                                       device="meta")
                            meta = base.as_strided(new.shape, new.stride, new.offset)
                        else:
                            bases[new.storage] = meta
                    t = mode.fake(meta, device)             # what the mode's own kernels make
                refs.adopt(t, new)
                made.append(t)
        finally:
            mode.recording = recording
        return made

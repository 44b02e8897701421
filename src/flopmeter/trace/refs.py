"""Tensor identity for one run: tensor → TensorRef with stable ids, storages and their lifetimes.

A tensor object gets an integer id the first time the run sees it (kept in a dict keyed by
``id(tensor)`` and checked with a weak reference, so a reused Python id is a new tensor).
Its storage gets an id too, keyed by the storage's address, and a weak reference with a
callback on the storage's Python object: PyTorch keeps that object alive exactly as long as
the storage (for fake tensors too), so the callback fires when the program drops the last
tensor using it — which is when eager PyTorch frees the memory. Nothing is allocated and no
tensor is kept alive by this bookkeeping.

:meth:`Refs.keyed` gives, in the same pass that makes an op's TensorRefs, a hashable key of the
op's arguments for the fake mode's dispatch memo (:mod:`.recorder`): each tensor's part of the
key is made once per snapshot by ``keyer`` (the fake mode's), like the snapshot itself, and
re-made when an op returns the tensor or when an op that can change a storage's size runs.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from .events import TensorRef, to_meta
from .model import StorageInfo


def _address(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, TypeError):
        return None


_UNSET = object()
_INTS = object()         # in a key: a list or tuple of ints follows, as one tuple


class Refs:
    def __init__(self) -> None:
        self._seen: dict[int, list] = {}           # id(tensor) → [weakref, its latest TensorRef, its key part]
        self._by_address: dict[int, int] = {}      # storage address → storage id (while alive)
        self._watch: dict[int, weakref.ref] = {}   # storage id → weak reference with a callback
        self.storages: dict[int, StorageInfo] = {}
        self._devices: dict[torch.device, str] = {}
        self._next_tensor = 0
        self.events = 0                            # events recorded so far (the recorder sets it)
        self.closed = False
        self.keyer = None                          # (tensor, its TensorRef) → hashable key part, or None

    def label(self, device: torch.device, name: str) -> None:
        """Name tensors and storages on ``device`` as ``name`` in their references (CPU fakes that
        stand for CUDA tensors are references on cuda)."""
        self._devices[torch.device(device)] = name

    # -- storages -----------------------------------------------------------
    def _storage(self, t: torch.Tensor, created: int, device: str) -> int:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):   # sparse, nested, functional wrappers
            return -1
        address = st._cdata
        sid = self._by_address.get(address)
        if sid is not None:
            return sid
        sid = len(self.storages)
        self.storages[sid] = StorageInfo(st.nbytes(), created, None, device)
        self._by_address[address] = sid
        self._watch[sid] = weakref.ref(st, lambda _, sid=sid, address=address: self._freed(sid, address))
        return sid

    def _freed(self, sid: int, address: int) -> None:
        if self._by_address.get(address) == sid:
            del self._by_address[address]
        if not self.closed:
            self.storages[sid].freed = self.events - 1

    # -- tensors ------------------------------------------------------------
    def ref(self, t: torch.Tensor, role: str | None = None, created: int | None = None, *,
            fresh: bool = False) -> TensorRef:
        """The TensorRef of ``t``. Unseen tensors get a new id and a role (``role``, else ``act``);
        an unseen storage is created at ``created`` (default: the current event; before the run
        for parameters, buffers and inputs). A seen tensor's snapshot is reused unless ``fresh`` (an op's results: an
        in-place op may have changed its shape, strides or storage)."""
        key = id(t)
        entry = self._seen.get(key)
        if entry is not None and entry[0]() is t:
            if not fresh:
                return entry[1]
            old = entry[1]
            entry[1] = r = self._snapshot(t, old.id, old.role, self.events)
            entry[2] = _UNSET
            return r
        tid = self._next_tensor
        self._next_tensor += 1
        role = role or "act"
        if created is None and role != "act":
            created = -1
        r = self._snapshot(t, tid, role, self.events if created is None else created)
        self._seen[key] = [weakref.ref(t), r, _UNSET]
        return r

    def _snapshot(self, t: torch.Tensor, tid: int, role: str, created: int) -> TensorRef:
        dev = t.device
        device = self._devices.get(dev)
        if device is None:
            device = self._devices[dev] = str(dev)
        try:
            stride, offset = t.stride(), t.storage_offset()
        except RuntimeError:
            stride, offset = None, 0
        return TensorRef(tuple(t.shape), t.dtype, id=tid, storage=self._storage(t, created, device), stride=stride,
                         offset=offset, device=device, requires_grad=t.requires_grad, role=role)

    def preloaded(self, tensors: list[tuple[torch.Tensor, str]], cache: list | None) -> list:
        """Reference ``tensors`` (parameter and buffer stand-ins, with their roles) first, as existing
        before the run. ``cache`` is what an earlier run of the same stand-ins returned: their
        snapshots and storages are reused (same ids, as the order is the same); returns the cache."""
        if cache is None:
            cache = []
            for t, role in tensors:
                r = self.ref(t, role, -1)
                info = self.storages.get(r.storage)
                cache.append((r, info.nbytes if info else 0, info.device if info else r.device,
                              _address(t) if info else None))
            return cache
        seen, storages, by_address = self._seen, self.storages, self._by_address
        for (t, _), (r, nbytes, device, address) in zip(tensors, cache):
            seen[id(t)] = [weakref.ref(t), r, _UNSET]
            if r.storage >= 0 and r.storage not in storages:
                storages[r.storage] = StorageInfo(nbytes, -1, None, device)
                by_address[address] = r.storage
        self._next_tensor = len(cache)
        return cache

    def keyed(self, args: tuple, kwargs: dict) -> tuple[Any, Any, tuple | None]:
        """(``meta(args)``, ``meta(kwargs)``, a hashable key of both) in one pass. The key names
        every argument by type and value, every container by type and length, every tensor by
        its key part (``keyer(tensor)``, made once per snapshot) and its ``requires_grad``; it is
        None when a tensor has no key part (``keyer`` gives None, or is not set)."""
        parts: list = []
        self._nokey = False
        margs = self._walk(args, parts)
        mkwargs = self._walk(kwargs, parts) if kwargs else {}
        if not kwargs:
            parts.append(0)
        return margs, mkwargs, (None if self._nokey else tuple(parts))

    _nokey = False

    def _walk(self, value, parts: list):
        append = parts.append
        append(type(value))
        append(len(value))
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                append(k)
                out[k] = self._item(v, parts)
            return out
        out = []
        for v in value:
            kind = type(v)
            if kind is int or kind is float or kind is bool or v is None:
                append(kind)
                append(v)
                out.append(v)
            else:
                out.append(self._item(v, parts))
        return out if isinstance(value, list) else tuple(out)     # named tuples become plain tuples

    def _item(self, v, parts: list):
        if isinstance(v, torch.Tensor):
            key = id(v)
            entry = self._seen.get(key)
            if entry is None or entry[0]() is not v:
                self.ref(v)
                entry = self._seen[key]
            part = entry[2]
            if part is _UNSET:
                part = entry[2] = self.keyer(v, entry[1]) if self.keyer is not None else None
            if part is None:
                self._nokey = True
            parts.append(part)
            parts.append(v.requires_grad)
            return entry[1]
        kind = type(v)
        if (kind is list or kind is tuple) and v and all(type(i) is int for i in v):
            parts.append(kind)                 # sizes, strides, dims: one part for the lot
            parts.append(_INTS)
            ints = tuple(v)
            parts.append(ints)
            return list(v) if kind is list else ints
        if isinstance(v, (list, tuple, dict)):
            return self._walk(v, parts)
        parts.append(kind)
        parts.append(v)
        return v

    def key_part(self, t: torch.Tensor):
        """``t``'s key part (made once per snapshot, as :meth:`keyed` makes it), or None."""
        entry = self._seen.get(id(t))
        if entry is None or entry[0]() is not t or self.keyer is None:
            return None
        if entry[2] is _UNSET:
            entry[2] = self.keyer(t, entry[1])
        return entry[2]

    def forget_keys(self) -> None:
        """Re-make every tensor's key part on its next use (an op may have resized a storage that
        other tensors share)."""
        for entry in self._seen.values():
            entry[2] = _UNSET

    def id_of(self, t: torch.Tensor) -> TensorRef | None:
        """The TensorRef of ``t`` if the run saw it, else None."""
        entry = self._seen.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def meta(self, value):
        """``value`` with every tensor inside replaced by its TensorRef."""
        return to_meta(value, self.ref)

    def fresh(self, value):
        """Like :meth:`meta`, re-reading tensors already seen (an op's results)."""
        return to_meta(value, self._fresh)

    def _fresh(self, t: torch.Tensor) -> TensorRef:
        return self.ref(t, fresh=True)

    # -- module replay (trace/replay.py) --------------------------------------
    def replayed(self, tensors: int, storages: list[StorageInfo]) -> None:
        """Take the next ``tensors`` ids and ``storages`` (in id order) for a replayed module call."""
        self._next_tensor += tensors
        for info in storages:
            self.storages[len(self.storages)] = info

    def adopt(self, t: torch.Tensor, ref: TensorRef) -> None:
        """``t`` (made by a replay) is the tensor ``ref`` describes; its storage, if new, is
        watched from now on."""
        self._seen[id(t)] = [weakref.ref(t), ref, _UNSET]      # [tensor, its ref, its memo key part]
        sid = ref.storage
        if sid >= 0 and sid not in self._watch:
            st = t.untyped_storage()
            address = st._cdata
            self._by_address[address] = sid
            self._watch[sid] = weakref.ref(st, lambda _, sid=sid, address=address: self._freed(sid, address))

    def close(self) -> dict[int, StorageInfo]:
        """Stop watching (later frees are after the run) and return the storages."""
        self.closed = True
        self._watch.clear()
        return self.storages

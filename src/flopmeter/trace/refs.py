"""Tensor identity for one run: tensor → TensorRef with stable ids, storages and their lifetimes.

A tensor object gets an integer id the first time the run sees it (kept in a dict keyed by
``id(tensor)`` and checked with a weak reference, so a reused Python id is a new tensor).
Its storage gets an id too, keyed by the storage's address, and a weak reference with a
callback on the storage's Python object: PyTorch keeps that object alive exactly as long as
the storage (for fake tensors too), so the callback fires when the program drops the last
tensor using it — which is when eager PyTorch frees the memory. Nothing is allocated and no
tensor is kept alive by this bookkeeping.
"""

from __future__ import annotations

import weakref

import torch

from .events import TensorRef, to_meta
from .model import StorageInfo


class Refs:
    def __init__(self) -> None:
        self._seen: dict[int, tuple] = {}          # id(tensor) → (weakref, tensor id, role)
        self._by_address: dict[int, int] = {}      # storage address → storage id (while alive)
        self._watch: dict[int, weakref.ref] = {}   # storage id → weak reference with a callback
        self.storages: dict[int, StorageInfo] = {}
        self._devices: dict[torch.device, str] = {}
        self._next_tensor = 0
        self.events = 0                            # events recorded so far (the recorder sets it)
        self.closed = False

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
    def ref(self, t: torch.Tensor, role: str | None = None, created: int | None = None) -> TensorRef:
        """The TensorRef of ``t`` now. Unseen tensors get a new id, with ``role`` (default
        ``act``); an unseen storage is created at ``created`` (default: the current event)."""
        key = id(t)
        entry = self._seen.get(key)
        if entry is None or entry[0]() is not t:
            tid = self._next_tensor
            self._next_tensor += 1
            role = role or "act"
            self._seen[key] = (weakref.ref(t), tid, role)
        else:
            _, tid, role = entry
        dev = t.device
        device = self._devices.get(dev)
        if device is None:
            device = self._devices[dev] = str(dev)
        sid = self._storage(t, self.events if created is None else created, device)
        try:
            stride, offset = t.stride(), t.storage_offset()
        except RuntimeError:
            stride, offset = None, 0
        return TensorRef(tuple(t.shape), t.dtype, id=tid, storage=sid, stride=stride, offset=offset,
                         device=device, requires_grad=t.requires_grad, role=role)

    def meta(self, value):
        """``value`` with every tensor inside replaced by its TensorRef."""
        return to_meta(value, self.ref)

    def close(self) -> dict[int, StorageInfo]:
        """Stop watching (later frees are after the run) and return the storages."""
        self.closed = True
        self._watch.clear()
        return self.storages

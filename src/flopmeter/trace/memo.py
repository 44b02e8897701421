"""The fake mode's dispatch memo: an op's fake results, made again from what the first call gave.

FakeTensor caches each op's output metadata, but building its cache key (every tensor's
metadata read afresh, through a dataclass, for every op) and replaying an entry (a generator
per dimension, a context manager per output) cost more than half of a fake op. The recorder
already holds a snapshot of every tensor an op gets, so :meth:`.Refs.keyed` makes, in the same
pass as the TensorRefs, a key from parts made once per snapshot: the op, the global state
FakeTensor keys on (default dtype and device, inference mode) and every argument — a tensor
by dtype, shape, strides, offset, device, storage size, conjugate/negative/inference bits and
``requires_grad`` (:meth:`.RecordingFakeMode.tensor_key`; each distinct part is numbered once,
so a key is a flat tuple of small values that hashes fast). Our key holds everything
FakeTensor's does, so a memo hit is a FakeTensor cache hit.

The first time a key is seen the op goes through FakeTensor as before, and the memo keeps
FakeTensor's own cache entry for it, turned into a :class:`Replay` (or ``BYPASS`` where
FakeTensor does not cache: real tensors, constants, data-dependent ops…). A replay makes the
results as FakeTensor's ``_get_output_tensor_from_cache_entry`` does — an empty meta tensor of
the cached dtype, shape and strides (set to the input's storage for a view; the input itself
for an in-place op), wrapped in a FakeTensor of the cached device — in one kernel-invocation
context for all results. One op FakeTensor never caches is kept too: ``aten._unsafe_view``
(every Linear on a 3-d input ends in one), whose result shares its input's storage although
the op is not marked as a view; it is replayed as a view of its input.

An event made through a memo entry points at it (``OpEvent.memo``): the entry's key fixes
everything a built-in formula reads (the op, its arguments' metadata and so its results'), so
the report costs an op once per key and reads the cost from the entry for later events.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor, _DispatchCacheValidEntry, in_kernel_invocation_manager

BYPASS = object()
MEMO: dict = {}                  # key → Replay or BYPASS (process-wide, like FakeTensor's own cache)
PARTS: dict = {}                 # a tensor's key part → a small int standing for it in keys
UNSAFE_VIEW = torch.ops.aten._unsafe_view.default

_VALUE, _ARG, _NEW = 0, 1, 2


class Replay:
    """The results of one op for one key: per result a constant (``_VALUE``), an argument
    returned in place (``_ARG``), or a new fake tensor (``_NEW``: its metadata and, for a view,
    the argument whose storage it shares)."""

    __slots__ = ("specs", "is_tuple", "makes", "costs")

    def __init__(self, specs: tuple, is_tuple: bool):
        self.specs, self.is_tuple = specs, is_tuple
        self.makes = any(spec[0] == _NEW for spec in specs)     # else no kernel-invocation context is needed
        self.costs: dict = {}    # (registry version, causal) → (status, Cost) of the op for this key (report/builder.py)

    @classmethod
    def of_entry(cls, entry, func) -> "Replay | None":
        """From FakeTensor's cache entry (None where it holds anything but plain ints)."""
        if type(entry) is not _DispatchCacheValidEntry:
            return None
        specs = []
        for info in entry.output_infos:
            md = info.metadata
            if info.inplace_idx is not None:
                specs.append((_ARG, info.inplace_idx))
            elif md is None:
                specs.append((_VALUE, info.constant_value if info.view_idx is None else None))
            else:
                shape, stride = tuple(md.shape), tuple(md.stride)
                if not all(type(v) is int for v in (*shape, *stride, md.storage_offset)):
                    return None
                if md.layout is not torch.strided or md.storage_bytes is not None and type(md.storage_bytes) is not int:
                    return None
                view = info.view_idx if isinstance(func, torch._ops.OpOverload) and func.is_view else None
                specs.append((_NEW, shape, stride, md.storage_offset, md.dtype, md.requires_grad, md.is_conj,
                              md.is_neg, md.device, view))
        return cls(tuple(specs), entry.is_output_tuple)

    @classmethod
    def in_place(cls) -> "Replay":
        """An op that returns its first argument, written in place, metadata unchanged."""
        return cls(((_ARG, 0),), False)

    @classmethod
    def of_alias(cls, mode, out, src) -> "Replay | None":
        """``out`` as a view of ``src``'s storage, where it is a plain fake tensor that is one."""
        plain = (type(out) is FakeTensor and out.fake_mode is mode and out.constant is None
                 and out.layout is torch.strided and not out.requires_grad and not out.is_conj() and not out.is_neg()
                 and out.is_inference() == src.is_inference())
        if not plain or out.untyped_storage()._cdata != src.untyped_storage()._cdata:
            return None
        return cls(((_NEW, tuple(out.shape), out.stride(), out.storage_offset(), out.dtype, False, False, False,
                     out.fake_device, 0),), False)

    def __call__(self, mode, args):
        specs = self.specs
        if not self.makes:                       # in place (relu_, add_, fill_…) or constants only
            outs = [args[spec[1]] if spec[0] == _ARG else spec[1] for spec in specs]
            return tuple(outs) if self.is_tuple else outs[0]
        made = []
        with in_kernel_invocation_manager(mode):
            for spec in specs:
                if spec[0] != _NEW:
                    made.append(None)
                    continue
                _, shape, stride, offset, dtype, requires_grad, conj, neg, _, view = spec
                empty = torch.empty_strided(shape, stride, dtype=dtype, device="meta", requires_grad=requires_grad)
                if conj:
                    torch._C._set_conj(empty, True)
                if neg:
                    torch._C._set_neg(empty, True)
                if view is not None:
                    empty.set_(args[view].untyped_storage(), offset, shape, stride)
                made.append(empty)
        outs = []
        for spec, empty in zip(specs, made):
            kind = spec[0]
            outs.append(mode.fake(empty, spec[8]) if kind == _NEW else args[spec[1]] if kind == _ARG
                        else spec[1])
        return tuple(outs) if self.is_tuple else outs[0]

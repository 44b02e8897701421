"""Tensors the model holds outside its registered parameters and buffers, kept as found.

The shadow (:mod:`.fakes`) replaces registered parameters and buffers, but a forward can reach
other tensors of the user's: a plain tensor attribute, a tensor in a dict, a list or a helper
object, one captured in a closure, a module-level global, the buffers of a module kept out of the
tree (``object.__setattr__``), or the gradient of such a parameter in a training step. Every
write to a tensor goes through an op whose schema marks the argument as written
(``Tensor(a!)``: in-place and ``out=`` ops, and metadata changes such as ``unsqueeze_``), so the
recorder hands the written arguments of those ops (:func:`written`, read once per op overload)
to a guard before running them:

- fake mode (:class:`FakeGuard`): a written argument that is not a fake is the user's real
  tensor; it is replaced by its fake (the one FakeTensor's converter keeps for it, so later reads
  of the same tensor see the same fake). The op runs on the fake and nothing real is written,
  also not for a moment.
- real mode (:class:`RealGuard`): the first write to a storage that existed before the run —
  not made by an op of the run, not one of flopmeter's copies — saves a copy of that storage,
  and the metadata and version counter of the tensor written; :meth:`RealGuard.put_back`
  restores them after the run, also when the forward raised. The forward itself sees its writes
  (a counter it increments and reads back has the value eager PyTorch would give), and a reader
  in another thread could see them until the run ends.

Ops that write nothing pay for nothing beyond the recorder's per-op lookup; an op that writes
pays, per written argument, a type check and a read of its view base (fake mode), or a dict
lookup of its storage (real mode); copies are made only of the user's tensors. Restoring a
storage's bytes writes them back in place, so the version counter is set back explicitly.

A training step also reaches the user's tensors through autograd: the backward accumulates
into the ``.grad`` of every leaf it meets, whether it is a registered parameter or not.
:func:`gradients_kept` puts those gradients back (the tensor object as found, or None).
"""

from __future__ import annotations

import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._mode_utils import no_dispatch

_WRITES: dict = {}
# ops that update running statistics in place without marking them written in their schema
_UNMARKED = {"native_batch_norm", "cudnn_batch_norm", "miopen_batch_norm", "batch_norm_update_stats",
             "batch_norm_gather_stats", "batch_norm_gather_stats_with_counts"}
_STATISTICS = ("running_mean", "running_var")


def written(func) -> tuple | None:
    """The (position, name) of each argument ``func`` writes, or None when it writes none."""
    try:
        return _WRITES[func]
    except KeyError:
        pass
    schema = getattr(func, "_schema", None)
    unmarked = getattr(getattr(func, "overloadpacket", None), "__name__", None) in _UNMARKED
    found = tuple((i, a.name) for i, a in enumerate(schema.arguments)
                  if (a.alias_info is not None and a.alias_info.is_write) or (unmarked and a.name in _STATISTICS)
                  ) if schema is not None else ()
    _WRITES[func] = found or None
    return found or None


def _arguments(writes: tuple, args: tuple, kwargs: dict):
    """(where, value) of each written argument present in the call: ``where`` is its position
    in ``args`` or its name in ``kwargs``."""
    n = len(args)
    for i, name in writes:
        if i < n:
            yield i, args[i]
        elif name in kwargs:
            yield name, kwargs[name]


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, torch.Tensor):
                yield v


class _Guard:
    """The written tensor objects the user holds: each one's version counter and autograd state
    as found (an in-place op bumps the counter after the op returns, also when the op ran on
    a stand-in; in a training step it may give the tensor a ``grad_fn``)."""

    def __init__(self):
        self._tensors: dict[int, tuple] = {}       # id(tensor) → (tensor, version, grad_fn, requires_grad)

    def _remember(self, t: torch.Tensor) -> None:
        if id(t) not in self._tensors:
            self._tensors[id(t)] = (t, t._version, t.grad_fn, t.requires_grad)
            base = t._base
            if base is not None and id(base) not in self._tensors:
                self._tensors[id(base)] = (base, base._version, base.grad_fn, base.requires_grad)

    def _restore_tensors(self) -> None:
        kept = list(self._tensors.values())[::-1]          # last first: views share their base's counter
        self._tensors.clear()
        if not kept:
            return
        with no_dispatch(), torch.no_grad():
            for t, _, grad_fn, requires_grad in kept:
                if t.grad_fn is not grad_fn and grad_fn is None:
                    with contextlib.suppress(RuntimeError):      # a view cannot be detached in place
                        t.detach_()
                if t.requires_grad != requires_grad and t.is_leaf:
                    t.requires_grad_(requires_grad)
            torch._C._autograd._unsafe_set_version_counter([k[0] for k in kept], [k[1] for k in kept])


class FakeGuard(_Guard):
    """Fake mode: the user's real tensors an op would write are replaced by their fakes."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def __call__(self, writes: tuple, args: tuple, kwargs: dict):
        replaced = None
        n = len(args)
        for where, name in writes:
            if where < n:
                value = args[where]
            elif name in kwargs:
                value, where = kwargs[name], name
            else:
                continue
            if type(value) is FakeTensor:
                base = value._base        # a fake view of a real tensor shares its version counter and autograd history
                if base is not None and type(base) is not FakeTensor:
                    self._remember(base)
                continue
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                new = self._fake(value)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) and type(v) is not FakeTensor
                                                          for v in value):
                new = type(value)(self._fake(v) if isinstance(v, torch.Tensor) else v for v in value)
            else:
                continue
            if replaced is None:
                replaced = (list(args), dict(kwargs))
            if isinstance(where, int):
                replaced[0][where] = new
            else:
                replaced[1][where] = new
        if replaced is None:
            return args, kwargs
        return tuple(replaced[0]), replaced[1]

    def _fake(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, FakeTensor):
            return t
        self._remember(t)
        return self.mode.fake_tensor_converter.from_real_tensor(self.mode, t)

    def put_back(self) -> None:
        """Restore the version counters and autograd state of the tensors written."""
        self._restore_tensors()


class RealGuard(_Guard):
    """Real mode: copy-on-write of storages that existed before the run (see the module docstring).
    ``own``: the storage ids of flopmeter's own tensors (the parameter and buffer copies, inputs
    made from ``input_shape``)."""

    def __init__(self, refs, events: list, own: set[int]):
        super().__init__()
        self.refs, self.events, self.own = refs, events, own
        self._theirs: dict[int, bool] = {}             # storage id → whether it existed before the run
        self._storages: dict[int, tuple] = {}          # storage id → (storage, its size, a copy of its bytes)
        self._shapes: dict[int, tuple] = {}            # id(tensor) → (tensor, storage, offset, size, stride)

    def __call__(self, writes: tuple, args: tuple, kwargs: dict):
        for _, value in _arguments(writes, args, kwargs):
            for t in _tensors(value):
                ref = self.refs.id_of(t)
                sid = ref.storage if ref is not None else -1
                if sid < 0:
                    continue
                theirs = self._theirs.get(sid)
                if theirs is None:
                    theirs = self._theirs[sid] = self._existed(sid)
                if theirs:
                    self._keep(sid, t)
        return args, kwargs

    def _existed(self, sid: int) -> bool:
        """Whether storage ``sid`` existed before the run: an input the caller gave, or first seen
        as an argument of an op (the op in flight or the one the storage is dated at) rather than
        as a result."""
        if sid in self.own:
            return False
        created = self.refs.storages[sid].created
        if created < 0 or created >= len(self.events):
            return True
        return any(r.storage == sid for r in self.events[created].inputs)

    def _keep(self, sid: int, t: torch.Tensor) -> None:
        self._remember(t)
        with no_dispatch(), torch.no_grad():
            if id(t) not in self._shapes:
                self._shapes[id(t)] = (t, t.untyped_storage(), t.storage_offset(), tuple(t.shape), t.stride())
            if sid not in self._storages:
                st = t.untyped_storage()
                self._storages[sid] = (st, st.nbytes(), st.clone())

    def put_back(self) -> None:
        """Restore every kept tensor's metadata, then every kept storage's bytes, then the version
        counters and autograd state."""
        with no_dispatch(), torch.no_grad():
            for t, st, offset, size, stride in self._shapes.values():
                if (t.untyped_storage()._cdata != st._cdata or t.storage_offset() != offset
                        or tuple(t.shape) != size or t.stride() != stride):
                    t.set_(st, offset, size, stride)
            for st, nbytes, saved in self._storages.values():
                if st.nbytes() != nbytes:
                    st.resize_(nbytes)
                st.copy_(saved)
        self._storages.clear()
        self._shapes.clear()
        self._restore_tensors()


def _leaves(root) -> list[torch.Tensor]:
    """The leaf tensors the backward from ``root`` (an autograd node) accumulates into."""
    found, seen, todo = [], set(), [root]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            found.append(variable)
        todo.extend(n for n, _ in node.next_functions)
    return found


@contextlib.contextmanager
def gradients_kept(loss: torch.Tensor, own: set[int]):
    """Around ``loss.backward()``: the ``.grad`` of every leaf it reaches that is not one of
    ``own`` (ids of flopmeter's parameter stand-ins) is put back as it was."""
    kept = [(t, t.grad) for t in _leaves(loss.grad_fn) if id(t) not in own]
    try:
        yield
    finally:
        for t, grad in kept:
            if t.grad is not grad:
                t.grad = grad

"""Ops that place elements by index or order them by value; validation helpers.

- ``max_unpool2d`` / ``max_unpool3d``: a scatter — each input value is written to the
  position its index names in a zero-filled output. No arithmetic; bytes: the values and
  indices read, the whole output written.
- ``_pack_padded_sequence``: copies the rows of a padded batch that are within each
  sequence's length into one packed tensor (Σ lengths rows) and counts them into
  ``batch_sizes``. No arithmetic (counting the lengths is integer bookkeeping on the
  host); bytes: the rows it keeps and the lengths read, the packed data and batch sizes
  written. The recurrent kernels that follow run on the packed rows only.
- ``sort`` (and ``argsort``, which calls it): a comparison sort of each length-L slice,
  L·⌈log₂ L⌉ comparisons (elementwise); ``topk``: keeping the best k of each slice in a
  heap, L·⌈log₂ k⌉ (at least L − 1). Estimates — radix-sort kernels compare nothing —
  but they grow the way the work does.
- ``_is_all_true`` / ``_is_any_true``: free. They reduce an argument check (a mask from
  comparisons, e.g. in ``torch.distributions``' ``validate_args``) to one bool for a
  Python ``if``; the comparisons are counted as ordinary pointwise ops, and the check is
  validation of the arguments, not the model's computation — like ``_assert_async``.
"""

from __future__ import annotations

from math import ceil, log2

from ..cost import ZERO, Cost
from .registry import REGISTRY, register

REGISTRY.free("aten._is_all_true", "aten._is_any_true")


@register("aten.max_unpool2d", "aten.max_unpool3d")
def max_unpool(ev):
    return ZERO


@register("aten._pack_padded_sequence", own_bytes=True)
def pack_padded_sequence(ev):   # (input, lengths, batch_first) → (data[Σ lengths, …], batch_sizes[T])
    lengths = ev.args[1]
    outs = ev.outputs
    return Cost(bytes_read=outs[0].nbytes + lengths.nbytes, bytes_written=sum(t.nbytes for t in outs))


def _slices(x, dim: int) -> tuple[int, int]:
    """(number of slices, slice length) of x along ``dim``."""
    if x.ndim == 0:
        return 1, 1
    length = x.shape[dim]
    return (x.numel // length if length else 0), length


def _ceil_log2(n: int) -> int:
    return ceil(log2(n)) if n > 1 else 0


@register("aten.sort")
def sort(ev):   # sort(self, dim=-1, descending=False); sort.stable(self, *, stable, dim=-1, descending=False)
    dim = ev.kwargs.get("dim", ev.args[1] if len(ev.args) > 1 and ev.overload == "default" else -1)
    rows, length = _slices(ev.args[0], dim)
    return Cost(elementwise=rows * length * _ceil_log2(length))


@register("aten.topk")
def topk(ev):   # (self, k, dim=-1, largest=True, sorted=True)
    x, k = ev.args[:2]
    rows, length = _slices(x, ev.arg("dim", -1))
    return Cost(elementwise=rows * max(length * _ceil_log2(k), length - 1 if length else 0))

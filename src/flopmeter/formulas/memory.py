"""Ops that move or create data but do no arithmetic (bytes only), ops that are free, the
embedding gather, and interpolation.

- free: views and reshapes (also found generically from the op schema), the ``unsafe_``
  splits (views without alias annotations, in GRU and LSTM cells), metadata queries,
  detach, allocation without writing;
- data movement (0 FLOPs, bytes read and written): copies, casts, concatenation, padding,
  indexing and gathers — a gather reads only the indices and the rows it picks;
- creation (0 FLOPs, bytes written): zeros, ones, full, arange, random tensors;
- interpolation: nearest is a gather; n-linear interpolation over d dimensions weighs
  2^d inputs per output (2^d multiplications + 2^d − 1 additions), bicubic 16 (31 ops).
"""

from __future__ import annotations

from ..cost import ZERO, Cost
from .registry import REGISTRY, register

REGISTRY.free(
    "aten.detach", "aten.detach_", "aten.alias", "aten._unsafe_view", "aten.lift_fresh", "aten.empty",
    "aten.empty_like", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided",
    "aten._local_scalar_dense", "aten.item", "aten.resolve_conj", "aten.resolve_neg", "aten.set_",
    "aten._assert_async", "aten._assert_tensor_metadata", "aten._functional_assert_async",
    "aten.sym_constrain_range", "aten.sym_constrain_range_for_size", "aten._assert_scalar",
    "aten.requires_grad_", "aten.retain_grad", "aten.is_same_size", "aten.size", "aten.stride",
    "aten.numel", "aten.dim", "aten.result_type", "aten._nested_tensor_size", "aten.record_stream",
    # splits whose results carry no alias annotation (in-place views are free by their inplace_view tag)
    "aten.unsafe_split", "aten.unsafe_split_with_sizes", "aten.unsafe_chunk",
)


@register("aten.clone", "aten.copy_", "aten.copy", "aten._to_copy", "aten.contiguous", "aten.lift_fresh_copy",
          "aten.cat", "aten.stack", "aten.constant_pad_nd", "aten.reflection_pad1d", "aten.reflection_pad2d",
          "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d",
          "aten.repeat", "aten.repeat_interleave", "aten.flip", "aten.roll", "aten.tril", "aten.triu",
          "aten.tril_", "aten.triu_", "aten.slice_scatter", "aten.select_scatter", "aten.index_put",
          "aten.index_put_", "aten.scatter", "aten.scatter_", "aten.masked_scatter", "aten.pixel_shuffle",
          "aten.pixel_unshuffle", "aten.channel_shuffle", "aten.native_channel_shuffle", "aten.im2col",
          "aten.col2im", "aten.fill", "aten.fill_", "aten.zero_", "aten.zeros_like", "aten.ones_like",
          "aten.full_like", "aten.masked_select", "aten.nonzero", "aten.diagonal_copy", "aten._reshape_copy",
          "aten.tile", "aten.split_with_sizes_copy", "aten.unbind_copy")
def data_movement(ev):
    return ZERO


def gather_bytes(ev) -> Cost:
    """A gather reads the indices (every input after the first) and the rows it writes."""
    out = sum(t.nbytes for t in ev.outputs)
    return Cost(bytes_read=sum(t.nbytes for t in ev.inputs[1:]) + out, bytes_written=out)


@register("aten.embedding", "aten.index_select", "aten.gather", "aten.index", "aten._embedding_bag",
          "aten.embedding_bag", own_bytes=True)
def gather(ev):
    """A lookup: reads the indices and the rows it picks (not the whole table), writes them."""
    return gather_bytes(ev)


@register("aten.zeros", "aten.ones", "aten.full", "aten.arange", "aten.linspace", "aten.logspace",
          "aten.scalar_tensor", "aten.eye", "aten.rand", "aten.randn", "aten.randint", "aten.rand_like",
          "aten.randn_like", "aten.randint_like", "aten.bernoulli", "aten.bernoulli_", "aten.uniform_",
          "aten.normal_", "aten.randperm", "aten.new_zeros", "aten.new_ones", "aten.new_full", "aten.tensor")
def creation(ev):
    return ZERO


_INTERP = {"nearest": 0, "linear": 3, "bilinear": 7, "trilinear": 15, "bicubic": 31}


def interp_cost(kind: str, out: int) -> Cost:
    """Interpolating ``out`` elements: nearest, linear, bilinear, trilinear or bicubic."""
    return Cost(elementwise=_INTERP[kind] * out)


def _interp(kind: str):
    def formula(ev):
        return interp_cost(kind, ev.outputs[0].numel)
    return formula


for _kind, _ops in {
    "nearest": ("aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
                "aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d"),
    "linear": ("aten.upsample_linear1d",),
    "bilinear": ("aten.upsample_bilinear2d", "aten._upsample_bilinear2d_aa"),
    "trilinear": ("aten.upsample_trilinear3d",),
    "bicubic": ("aten.upsample_bicubic2d", "aten._upsample_bicubic2d_aa"),
}.items():
    register(*_ops)(_interp(_kind))

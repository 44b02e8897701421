"""Low-precision matrix products (fp8, int8, int4) and the quantize/dequantize conversions.

A low-precision product does the same dot products as any matmul — (M × K) @ (K × N) is
M·N dot products of length K, M·K·N MACs (:func:`matmul_cost`) — so MACs do not change
with precision; what changes is the precision they run in, which each formula registers
(``Registry.precision``: ``float8_e4m3fn``, ``int8``, ``bfloat16×int4`` …; a report sums
MACs per precision with ``report.macs_by_precision()``), and the bytes, which are the
tensors' real element sizes (1 byte per fp8 or int8 element; a packed int4 weight holds two
values per byte, so N·K/2 bytes whatever container dtype it is packed in).

Around the products (elementwise, outside the dot products):

- ``_scaled_mm`` (fp8): the epilogue that applies the scales, one multiply per output
  element (block-wise scales of the MX formats are applied inside the dot products, by the
  matrix unit); a bias adds one per output element;
- ``_int_mm`` (int8 × int8 → int32): nothing else;
- ``_weight_int8pack_mm`` (weight-only int8, activations in bf16/fp16/fp32): one multiply
  per output element by the per-channel scale; its MACs run in the activations' precision
  with int8 weights (``bfloat16×int8``);
- ``_weight_int4pack_mm`` (+ ``_for_cpu``, ``_with_scales_and_zeros``; weight-only int4,
  group-wise scales and zeros): each weight is dequantised once, 2 per weight element
  (scale and shift), ``bfloat16×int4``;
- ``_dyn_quant_matmul_4bit`` (activations quantised per row to int8 on the fly, int4
  weights): 4 per input element to quantise it (min, max, scale, shift), ``int8×int4``;
- ``quantize_per_tensor`` / ``quantize_per_channel``: 2 per element (scale, shift; rounding
  and clamping are part of the conversion); ``quantize_per_tensor_dynamic`` 4 (min and max
  first); ``dequantize``: 2 per element (subtract the zero point, scale).
"""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .matmul import matmul_cost
from .registry import dtype_label, operands, register


def _mm_dims(ev) -> tuple[int, int, int]:
    """(M, K, N) of a product whose first argument is the (…, K) activation and whose
    output is (…, N); leading dimensions fold into M."""
    x, out = ev.args[0], ev.outputs[0]
    k, n = x.shape[-1], out.shape[-1]
    return prod(x.shape[:-1]), k, n


def _both(ev) -> str:
    return operands(dtype_label(ev.args[0].dtype), dtype_label(ev.args[1].dtype))


def _activation_with(weight: str):
    return lambda ev: operands(dtype_label(ev.args[0].dtype), weight)


# -- fp8 ------------------------------------------------------------------------------

@register("aten._scaled_mm", "aten._scaled_mm_v2", precision=_both)
def scaled_mm(ev):
    # _scaled_mm(self, mat2, scale_a, scale_b, bias=None, scale_result=None, out_dtype, use_fast_accum)
    # _scaled_mm_v2(self, mat2, scale_a[], recipe_a, swizzle_a, scale_b[], recipe_b, swizzle_b, bias, …)
    a, b = ev.args[:2]
    m, k = a.shape
    n = b.shape[1]
    bias = ev.arg("bias")
    return matmul_cost(1, m, k, n, bias=bias is not None) + Cost(elementwise=m * n)


def grouped_mm_macs(a, b, out) -> int:
    """MACs of a grouped product: 2-d × 2-d splits K into groups (output G × M × N, each
    from its slice of K): M·K·N in all; every other layout: each output element is one dot
    product of length K."""
    if a.ndim == 2 and b.ndim == 2:
        return a.shape[0] * a.shape[1] * b.shape[1]
    return out.numel * a.shape[-1]


def _grouped(scaled: bool):
    def formula(ev):
        # _grouped_mm(self, mat2, offs, bias, out_dtype); _scaled_grouped_mm(self, mat2, scale_a, scale_b,
        # offs, bias, …); _scaled_grouped_mm_v2(self, mat2, scale_a[], recipe_a, swizzle_a, scale_b[], …)
        a, b = ev.args[:2]
        out = ev.outputs[0]
        macs = grouped_mm_macs(a, b, out)
        bias = ev.arg("bias")
        dots = macs // a.shape[-1] if a.shape[-1] else 0
        extra = (out.numel if scaled else 0) + (out.numel if bias is not None else 0)
        return Cost(macs=macs, dots=dots, elementwise=extra)
    return formula


register("aten._scaled_grouped_mm", "aten._scaled_grouped_mm_v2", precision=_both)(_grouped(True))
register("aten._grouped_mm", precision=_both)(_grouped(False))


# -- int8 -----------------------------------------------------------------------------

@register("aten._int_mm", precision=_both)
def int_mm(ev):   # (self int8[M, K], mat2 int8[K, N]) → int32[M, N]
    m, k, n = _mm_dims(ev)
    return matmul_cost(1, m, k, n)


@register("aten._weight_int8pack_mm", precision=_activation_with("int8"))
def weight_int8pack_mm(ev):   # (self[M, K], mat2 int8[N, K], scales[N]) → [M, N]
    m, k, n = _mm_dims(ev)
    return matmul_cost(1, m, k, n) + Cost(elementwise=m * n)


# -- int4 -----------------------------------------------------------------------------

@register("aten._weight_int4pack_mm", "aten._weight_int4pack_mm_for_cpu",
          "aten._weight_int4pack_mm_with_scales_and_zeros", precision=_activation_with("int4"))
def weight_int4pack_mm(ev):   # (self[M, K], packed int4 weight, qGroupSize, scales and zeros …) → [M, N]
    m, k, n = _mm_dims(ev)
    return matmul_cost(1, m, k, n) + Cost(elementwise=2 * n * k)


@register("aten._dyn_quant_matmul_4bit", precision=lambda ev: "int8×int4")
def dyn_quant_matmul_4bit(ev):   # (inp[M, K], packed_weights, block_size, in_features, out_features)
    m, k, n = _mm_dims(ev)
    return matmul_cost(1, m, k, n) + Cost(elementwise=4 * m * k)


# -- conversions ----------------------------------------------------------------------

@register("aten.quantize_per_tensor", "aten.quantize_per_channel", "aten.dequantize")
def convert(ev):
    return Cost(elementwise=2 * sum(t.numel for t in ev.outputs))


@register("aten.quantize_per_tensor_dynamic")
def quantize_dynamic(ev):
    return Cost(elementwise=4 * ev.args[0].numel)

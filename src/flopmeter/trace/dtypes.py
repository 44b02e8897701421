"""Fake mode must fail where a real run fails on mixed dtypes.

The fake (meta) kernels of the matrix-product family do not check that their operands share a
dtype, so an int64 input to a float Linear, a complex input, or an fp16 model given fp32
inputs would be counted although the model cannot run. :func:`check_dtypes` makes the same
check the real kernels make, before the fake kernel runs, and raises the RuntimeError a real
run raises, naming the op and the dtypes."""

from __future__ import annotations

import torch

# op name → positions of the operands that must share one dtype (None: every tensor argument)
_SAME_DTYPE: dict[str, tuple[int, ...] | None] = {
    **{f"aten.{name}": None for name in (
        "mm", "bmm", "addmm", "baddbmm", "addbmm", "addmv", "addr", "mv", "dot", "vdot", "matmul", "linear",
        "_addmm_activation", "convolution", "_convolution", "conv1d", "conv2d", "conv3d",
        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "mkldnn_convolution")},
    **{f"aten.{name}": (0, 1, 2) for name in (
        "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")},
    "aten._native_multi_head_attention": (0, 1, 2, 5, 6, 7, 8),
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


_UNSEEN = object()
_RULES: dict = {}          # OpOverload → positions, None (all tensors) or False (not checked); filled on use


def _rule(func):
    op = f"{func.namespace}.{func.overloadpacket.__name__}"
    return _SAME_DTYPE[op] if op in _SAME_DTYPE else False


def check_dtypes(func, args) -> None:
    """Raise RuntimeError when ``func``'s operands (for the ops above) differ in dtype."""
    positions = _RULES.get(func, _UNSEEN)
    if positions is _UNSEEN:
        positions = _RULES[func] = _rule(func)
    if positions is False:
        return
    op = f"{func.namespace}.{func.overloadpacket.__name__}"
    picked = [(i, a) for i, a in enumerate(args)
              if isinstance(a, torch.Tensor) and (positions is None or i in positions)]
    if len({a.dtype for _, a in picked}) <= 1:
        return
    names = [arg.name for arg in func._schema.arguments]
    listed = ", ".join(f"{names[i] if i < len(names) else i}: {_dtype_name(a.dtype)}" for i, a in picked)
    raise RuntimeError(f"{op} needs operands of one dtype, got {listed} (a real run fails here too)")

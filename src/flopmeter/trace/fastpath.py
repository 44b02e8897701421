"""Whether ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` take their fused
inference path (``aten._native_multi_head_attention``, ``aten._transformer_encoder_layer_fwd``).

Both refuse that path when any torch function mode is active ("some Tensor argument
has_torch_function"), so while :class:`.kernels.DeviceKernels` is on, every call would take the
unfused path, which the device would not. A call of such a module runs with the mode off when
:func:`takes_fast_path` says PyTorch 2.14's own checks (``activation.py`` and
``transformer.py``, all but the torch-function one) pass; otherwise it keeps the mode, and the
unfused path's attention takes the device's kernel.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

_DEVICES = ("cpu", "cuda", "xpu")


def _devices_ok(tensors, allowed) -> bool:
    custom = torch.utils.backend_registration._privateuse1_backend_name
    return all(t is None or t.device.type in (*allowed, custom) for t in tensors)


def _grad_blocks(tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _floating(mask) -> bool:
    return mask is not None and torch.is_floating_point(mask)


def mha_fast(m: nn.MultiheadAttention, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
             average_attn_weights=True, is_causal=False) -> bool:
    if _floating(attn_mask) or _floating(key_padding_mask):
        return False
    w, b = m.in_proj_weight, m.in_proj_bias
    if not (torch.backends.mha.get_fastpath_enabled() and isinstance(query, torch.Tensor) and query.dim() == 3
            and query is key and key is value and w is not None and (b is None or query.dtype == b.dtype)
            and query.dtype == w.dtype and not m.training and m.num_heads % 2 == 0 and m.batch_first
            and m.bias_k is None and m.bias_v is None and not m.add_zero_attn and m._qkv_same_embed_dim
            and not (query.is_nested and (key_padding_mask is not None or attn_mask is not None))
            and not torch.is_autocast_enabled()):
        return False
    tensors = (query, key, value, w, b, m.out_proj.weight, m.out_proj.bias)
    return _devices_ok(tensors, ("cpu", "cuda")) and not _grad_blocks(tensors) and b is not None


def tel_fast(m: nn.TransformerEncoderLayer, src, src_mask=None, src_key_padding_mask=None, is_causal=False) -> bool:
    a = m.self_attn
    if not (torch.backends.mha.get_fastpath_enabled() and isinstance(src, torch.Tensor) and src.dim() == 3
            and not m.training and a.batch_first and a.in_proj_bias is not None and a._qkv_same_embed_dim
            and m.activation_relu_or_gelu and m.norm1.eps == m.norm2.eps
            and not (src.is_nested and (src_key_padding_mask is not None or src_mask is not None))
            and a.num_heads % 2 == 0 and not torch.is_autocast_enabled()):
        return False
    if any(len(getattr(x, "_forward_hooks", {})) + len(getattr(x, "_forward_pre_hooks", {})) for x in m.modules()):
        return False
    tensors = (src, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight, a.out_proj.bias, m.norm1.weight,
               m.norm1.bias, m.norm2.weight, m.norm2.bias, m.linear1.weight, m.linear1.bias, m.linear2.weight,
               m.linear2.bias)
    return _devices_ok(tensors, _DEVICES) and not _grad_blocks(tensors)


_CHECKS = ((nn.MultiheadAttention, mha_fast), (nn.TransformerEncoderLayer, tel_fast))


def takes_fast_path(module: nn.Module, args: tuple, kwargs: dict) -> bool:
    """Whether this call of ``module`` would take its fused path (False for any other module, and
    for a call whose arguments do not bind to the forward's signature)."""
    for kind, check in _CHECKS:
        if isinstance(module, kind) and type(module).forward is kind.forward:     # a subclass's own forward: unknown
            try:
                inspect.signature(check).bind(module, *args, **kwargs)
            except TypeError:
                return False
            return check(module, *args, **kwargs)
    return False


def candidates(modules) -> dict[str, nn.Module]:
    """path → module for the modules whose calls :func:`takes_fast_path` decides."""
    return {path: m for path, m in modules
            if any(isinstance(m, kind) and type(m).forward is kind.forward for kind, _ in _CHECKS)}


__all__ = ["candidates", "takes_fast_path"]

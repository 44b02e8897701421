"""Attention: every scaled_dot_product_attention kernel PyTorch dispatches to, and the
fused nn.MultiheadAttention / TransformerEncoderLayer fast paths.

The attention core (:func:`attention_core_cost`) for B = batch·query-heads, L queries,
S keys, head widths E (q·k) and Ev (v):

- scores ``q @ kᵀ``: B·L·S dot products of length E;
- weighted sum ``p @ v``: B·L·Ev dot products of length S;
- elementwise: scaling B·L·S, mask add B·L·S (when a mask is given), softmax 4 per score
  (max, subtract, sum, divide) + one exp (transcendental), dropout 2 per score in training.

Causal masks are counted in full, as dense kernels compute them. Grouped-query attention
counts per *query* head (keys and values are shared, the products are not).
"""

from __future__ import annotations

from math import prod

from ..cost import Cost
from .matmul import matmul_cost
from .registry import register


def softmax_cost(n: int) -> Cost:
    """Softmax over n elements: max, subtract, sum, divide (4n) + n exponentials."""
    return Cost(elementwise=4 * n, transcendental=n)


def attention_core_cost(b: int, l: int, s: int, e: int, ev_: int, *, mask: bool = False,
                        dropout: bool = False) -> Cost:
    scores = b * l * s
    cost = matmul_cost(b, l, e, s) + matmul_cost(b, l, s, ev_) + softmax_cost(scores)
    extra = scores + (scores if mask else 0) + (2 * scores if dropout else 0)
    return cost + Cost(elementwise=extra)


def _bhld(ev, mask_index: int | None, mask_name: str | None, dropout_index: int):
    """Layout (..., L, E) as used by the aten._scaled_dot_product_* kernels."""
    q, k, v = ev.args[:3]
    mask = ev.arg(mask_index, mask_name) if mask_name else None
    p = ev.arg(dropout_index, "dropout_p", 0.0) or 0.0
    return attention_core_cost(prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1],
                               mask=mask is not None, dropout=p > 0)


@register("aten.scaled_dot_product_attention")
def sdpa(ev):  # (query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale, enable_gqa)
    return _bhld(ev, 3, "attn_mask", 4)


@register("aten._scaled_dot_product_attention_math")
def sdpa_math(ev):  # (query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, dropout_mask=None, ...)
    return _bhld(ev, 3, "attn_mask", 4)


@register("aten._scaled_dot_product_flash_attention_for_cpu")
def sdpa_flash_cpu(ev):  # (query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None)
    return _bhld(ev, 99, "attn_mask", 3)


@register("aten._scaled_dot_product_flash_attention")
def sdpa_flash(ev):  # (query, key, value, dropout_p=0.0, is_causal=False, return_debug_mask=False, *, scale)
    return _bhld(ev, None, None, 3)


@register("aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention",
          "aten._scaled_dot_product_fused_attention_overrideable")
def sdpa_with_bias(ev):  # (query, key, value, attn_bias, compute_log_sumexp | dropout_p, …)
    p_index = 4 if ev.op.endswith("overrideable") else 5
    return _bhld(ev, 3, "attn_bias", p_index)


def _blhd(ev, dropout_index: int):
    """Layout (batch, L, heads, E) of the lower-level flash/efficient kernels."""
    q, k, v = ev.args[:3]
    p = ev.arg(dropout_index, "dropout_p", 0.0) or 0.0
    n, l, h, e = q.shape[-4:] if q.ndim == 4 else (1, *q.shape)
    return attention_core_cost(n * h, l, k.shape[-3], e, v.shape[-1], dropout=p > 0)


@register("aten._flash_attention_forward")
def flash_forward(ev):  # (query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, …)
    return _blhd(ev, 7)


@register("aten._efficient_attention_forward")
def efficient_forward(ev):  # (query, key, value, bias, cu_seqlens_q, cu_seqlens_k, max_q, max_k, dropout_p, …)
    cost = _blhd(ev, 8)
    if ev.arg(3, "bias") is not None:
        q, k = ev.args[:2]
        cost += Cost(elementwise=q.shape[0] * q.shape[2] * q.shape[1] * k.shape[1])
    return cost


def mha_cost(n: int, lq: int, lk: int, d: int, heads: int, *, in_bias: bool, out_bias: bool,
             mask: bool = False, average_weights: bool = False) -> Cost:
    """Multi-head attention with input and output projections of width d."""
    hd = d // heads
    cost = (matmul_cost(1, n * lq, d, d, bias=in_bias)            # q projection
            + matmul_cost(1, n * lk, d, 2 * d, bias=in_bias)      # k and v projections
            + attention_core_cost(n * heads, lq, lk, hd, hd, mask=mask)
            + matmul_cost(1, n * lq, d, d, bias=out_bias))         # output projection
    if average_weights:
        cost += Cost(elementwise=n * heads * lq * lk)
    return cost


def _nld(t):
    return (t.shape[0], t.shape[1], t.shape[2]) if t.ndim == 3 else (1, t.shape[0], t.shape[1])


@register("aten._native_multi_head_attention")
def native_mha(ev):
    # (query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias,
    #  mask=None, need_weights=True, average_attn_weights=True, mask_type=None)
    q, k = ev.args[0], ev.args[1]
    d, heads = ev.args[3], ev.args[4]
    n, lq, _ = _nld(q)
    _, lk, _ = _nld(k)
    need = bool(ev.arg(10, "need_weights", True))
    return mha_cost(n, lq, lk, d, heads, in_bias=ev.args[6] is not None, out_bias=ev.args[8] is not None,
                    mask=ev.arg(9, "mask") is not None, average_weights=need and bool(ev.arg(11, "average_attn_weights", True)))


@register("aten._transformer_encoder_layer_fwd")
def encoder_layer(ev):
    # (src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu, norm_first,
    #  eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1,
    #  ffn_weight_2, ffn_bias_2, mask=None, mask_type=None)
    from .norm import layer_norm_cost

    src = ev.args[0]
    d, heads = ev.args[1], ev.args[2]
    use_gelu = bool(ev.args[7])
    ff = ev.args[14].shape[0]
    n, l, _ = _nld(src)
    rows = n * l
    act = Cost(transcendental=rows * ff) if use_gelu else Cost(elementwise=rows * ff)
    return (mha_cost(n, l, l, d, heads, in_bias=ev.args[4] is not None, out_bias=ev.args[6] is not None,
                     mask=ev.arg(18, "mask") is not None)
            + Cost(elementwise=2 * rows * d)                                # two residual adds
            + layer_norm_cost(rows * d, rows, weight=ev.args[10] is not None, bias=ev.args[11] is not None)
            + layer_norm_cost(rows * d, rows, weight=ev.args[12] is not None, bias=ev.args[13] is not None)
            + matmul_cost(1, rows, d, ff, bias=ev.args[15] is not None) + act
            + matmul_cost(1, rows, ff, d, bias=ev.args[17] is not None))

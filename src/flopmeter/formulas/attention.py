"""Attention: every scaled_dot_product_attention kernel PyTorch dispatches to, and the
fused nn.MultiheadAttention / TransformerEncoderLayer fast paths.

The attention core (:func:`attention_core_cost`) for B = batch·query-heads, L queries,
S keys, head widths E (q·k) and Ev (v), and P computed query–key pairs per head (L·S):

- scores ``q @ kᵀ``: B·P dot products of length E;
- weighted sum ``p @ v``: B·L·Ev dot products, of length S each (B·P·Ev MACs);
- elementwise: scaling B·P, mask add B·P (when a mask is given), softmax 4 per score
  (max, subtract, sum, divide) + one exp (transcendental), dropout 2 per score in training.

Causal masks are counted in full by default, as dense kernels compute them. With
``Options(causal="exact")`` (:func:`with_causal`) only the unmasked pairs are counted:
PyTorch's ``is_causal`` aligns the mask top-left (query i sees keys j ≤ i), so
P = Σ_{i<L} min(i + 1, S) = m(m + 1)/2 + (L − m)·S with m = min(L, S); the flash kernels'
``is_causal`` (and ``causal_lower_right``) align it bottom-right, P = m(m + 1)/2 + m·(S − m),
and only m rows see any key. Grouped-query attention counts per *query* head (keys and
values are shared, the products are not).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..cost import Cost
from ..errors import OptionsError
from .matmul import matmul_cost
from .registry import Registry, register

CAUSAL = ("full", "exact")


def softmax_cost(n: int) -> Cost:
    """Softmax over n elements: max, subtract, sum, divide (4n) + n exponentials."""
    return Cost(elementwise=4 * n, transcendental=n)


def causal_pairs(l: int, s: int, *, lower_right: bool = False) -> tuple[int, int]:
    """(unmasked query–key pairs, query rows that see at least one key) of a causal L×S mask."""
    m = min(l, s)
    if lower_right:
        return m * (m + 1) // 2 + m * (s - m), m
    return m * (m + 1) // 2 + (l - m) * s, l


def attention_core_cost(b: int, l: int, s: int, e: int, ev_: int, *, mask: bool = False,
                        dropout: bool = False, scale_scores: bool = True,
                        pairs: tuple[int, int] | None = None) -> Cost:
    """``pairs``: (P, rows) from :func:`causal_pairs` when a causal mask is counted exactly."""
    p, rows = pairs or (l * s, l)
    scores = b * p
    products = Cost(macs=scores * e, dots=scores) + Cost(macs=scores * ev_, dots=b * rows * ev_)
    extra = (scores if scale_scores else 0) + (scores if mask else 0) + (2 * scores if dropout else 0)
    return products + softmax_cost(scores) + Cost(elementwise=extra)


def _arg(ev, where: tuple):
    index, name = where
    return ev.kwargs.get(name) if index is None else ev.arg(index, name)


@dataclass(frozen=True)
class Kernel:
    """Where one SDPA kernel keeps its arguments: ``(index, name)`` pairs (index None: keyword only)."""

    layout: str                       # "bhld": (..., L, E); "blhd": (batch, L, heads, E)
    dropout: tuple
    mask: tuple | None = None
    causal: tuple | None = None       # is_causal flag, or the efficient kernel's custom_mask_type
    lower_right: bool = False         # is_causal means a bottom-right aligned mask

    def cost(self, ev, exact_causal: bool) -> Cost:
        q, k, v = ev.args[:3]
        if self.layout == "bhld":
            b, l, s, e = prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1]
        else:
            n, l, h, e = q.shape[-4:] if q.ndim == 4 else (1, *q.shape)
            b, s = n * h, k.shape[-3]
        mask = self.mask is not None and _arg(ev, self.mask) is not None
        dropout = (_arg(ev, self.dropout) or 0.0) > 0
        pairs = None
        if exact_causal and self.causal is not None:
            flag = _arg(ev, self.causal)
            if flag:   # is_causal, or custom_mask_type 1 (top-left) / 2 (bottom-right)
                pairs = causal_pairs(l, s, lower_right=self.lower_right or flag == 2)
        return attention_core_cost(b, l, s, e, v.shape[-1], mask=mask, dropout=dropout, pairs=pairs)


KERNELS = {
    # (query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale, enable_gqa)
    "aten.scaled_dot_product_attention": Kernel("bhld", (4, "dropout_p"), (3, "attn_mask"), (5, "is_causal")),
    "aten._scaled_dot_product_attention_math": Kernel("bhld", (4, "dropout_p"), (3, "attn_mask"), (5, "is_causal")),
    # (query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None)
    "aten._scaled_dot_product_flash_attention_for_cpu": Kernel("bhld", (3, "dropout_p"), (None, "attn_mask"),
                                                               (4, "is_causal")),
    # (query, key, value, dropout_p=0.0, is_causal=False, return_debug_mask=False, *, scale)
    "aten._scaled_dot_product_flash_attention": Kernel("bhld", (3, "dropout_p"), None, (4, "is_causal"), True),
    # (query, key, value, attn_bias, compute_log_sumexp, dropout_p=0.0, is_causal=False, …)
    "aten._scaled_dot_product_efficient_attention": Kernel("bhld", (5, "dropout_p"), (3, "attn_bias"),
                                                           (6, "is_causal")),
    "aten._scaled_dot_product_cudnn_attention": Kernel("bhld", (5, "dropout_p"), (3, "attn_bias"), (6, "is_causal")),
    # (query, key, value, attn_bias=None, dropout_p=0.0, is_causal=False, …)
    "aten._scaled_dot_product_fused_attention_overrideable": Kernel("bhld", (4, "dropout_p"), (3, "attn_bias"),
                                                                    (5, "is_causal")),
    # (query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, …)
    "aten._flash_attention_forward": Kernel("blhd", (7, "dropout_p"), None, (8, "is_causal"), True),
    # (query, key, value, bias, cu_seqlens_q, cu_seqlens_k, max_q, max_k, dropout_p, custom_mask_type, …)
    "aten._efficient_attention_forward": Kernel("blhd", (8, "dropout_p"), (3, "bias"), (9, "custom_mask_type")),
}


def _formula(kernel: Kernel, exact_causal: bool):
    def formula(ev):
        return kernel.cost(ev, exact_causal)
    return formula


FULL = {name: register(name)(_formula(kernel, False)) for name, kernel in KERNELS.items()}
EXACT = {name: _formula(kernel, True) for name, kernel in KERNELS.items()}


def check_causal(causal: str) -> None:
    if causal not in CAUSAL:
        raise OptionsError(f"unknown causal counting '{causal}'", hint=f"choose one of: {', '.join(CAUSAL)}")


def with_causal(registry: Registry, causal: str) -> Registry:
    """``registry`` itself for ``"full"``; for ``"exact"`` a copy whose built-in attention
    formulas count only the unmasked pairs of a causal mask (user overrides are kept)."""
    check_causal(causal)
    if causal == "full":
        return registry
    exact = registry.copy()
    for name, fn in EXACT.items():
        if registry.formula(name) is FULL[name]:
            exact.override(name, fn)
    return exact


def mha_cost(n: int, lq: int, lk: int, d: int, heads: int, *, in_bias: bool, out_bias: bool,
             mask: bool = False, need_weights: bool = False, average_weights: bool = False) -> Cost:
    """Multi-head attention with input and output projections of width d. Returning the
    weights takes the explicit path, which scales q (n·lq·d) rather than the scores."""
    hd = d // heads
    cost = (matmul_cost(1, n * lq, d, d, bias=in_bias)            # q projection
            + matmul_cost(1, n * lk, d, 2 * d, bias=in_bias)      # k and v projections
            + attention_core_cost(n * heads, lq, lk, hd, hd, mask=mask, scale_scores=not need_weights)
            + matmul_cost(1, n * lq, d, d, bias=out_bias))         # output projection
    if need_weights:
        cost += Cost(elementwise=n * lq * d)
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
                    mask=ev.arg(9, "mask") is not None, need_weights=need,
                    average_weights=need and bool(ev.arg(11, "average_attn_weights", True)))


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

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


@dataclass(frozen=True)
class Kernel:
    """What one SDPA kernel calls its arguments (all kernels take ``query``, ``key``, ``value``
    and ``dropout_p``)."""

    layout: str                       # "bhld": (..., L, E); "blhd": (batch, L, heads, E)
    mask: str | None = None           # attn_mask, attn_bias or bias
    causal: str | None = "is_causal"  # the is_causal flag, or the efficient kernel's custom_mask_type
    lower_right: bool = False         # is_causal means a bottom-right aligned mask

    def cost(self, ev, exact_causal: bool) -> Cost:
        q, k, v = ev.arg("query"), ev.arg("key"), ev.arg("value")
        if self.layout == "bhld":
            b, l, s, e = prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1]
        else:
            n, l, h, e = q.shape[-4:] if q.ndim == 4 else (1, *q.shape)
            b, s = n * h, k.shape[-3]
        mask = self.mask is not None and ev.arg(self.mask) is not None
        dropout = (ev.arg("dropout_p") or 0.0) > 0
        pairs = None
        if exact_causal and self.causal is not None:
            flag = ev.arg(self.causal)
            if flag:   # is_causal, or custom_mask_type 1 (top-left) / 2 (bottom-right)
                pairs = causal_pairs(l, s, lower_right=self.lower_right or flag == 2)
        return attention_core_cost(b, l, s, e, v.shape[-1], mask=mask, dropout=dropout, pairs=pairs)


KERNELS = {
    "aten.scaled_dot_product_attention": Kernel("bhld", "attn_mask"),
    "aten._scaled_dot_product_attention_math": Kernel("bhld", "attn_mask"),
    "aten._scaled_dot_product_flash_attention_for_cpu": Kernel("bhld", "attn_mask"),
    "aten._scaled_dot_product_flash_attention": Kernel("bhld", None, lower_right=True),
    "aten._scaled_dot_product_efficient_attention": Kernel("bhld", "attn_bias"),
    "aten._scaled_dot_product_cudnn_attention": Kernel("bhld", "attn_bias"),
    "aten._scaled_dot_product_fused_attention_overrideable": Kernel("bhld", "attn_bias"),
    "aten._flash_attention_forward": Kernel("blhd", None, lower_right=True),
    "aten._efficient_attention_forward": Kernel("blhd", "bias", "custom_mask_type"),
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
    n, lq, _ = _nld(ev.arg("query"))
    _, lk, _ = _nld(ev.arg("key"))
    need = bool(ev.arg("need_weights", True))
    return mha_cost(n, lq, lk, ev.arg("embed_dim"), ev.arg("num_head"), in_bias=ev.arg("qkv_bias") is not None,
                    out_bias=ev.arg("proj_bias") is not None, mask=ev.arg("mask") is not None, need_weights=need,
                    average_weights=need and bool(ev.arg("average_attn_weights", True)))


@register("aten._transformer_encoder_layer_fwd")
def encoder_layer(ev):
    from .norm import layer_norm_cost

    d, heads, ff = ev.arg("embed_dim"), ev.arg("num_heads"), ev.arg("ffn_weight_1").shape[0]
    n, l, _ = _nld(ev.arg("src"))
    rows = n * l
    act = Cost(transcendental=rows * ff) if ev.arg("use_gelu") else Cost(elementwise=rows * ff)

    def given(name: str) -> bool:
        return ev.arg(name) is not None

    return (mha_cost(n, l, l, d, heads, in_bias=given("qkv_bias"), out_bias=given("proj_bias"), mask=given("mask"))
            + Cost(elementwise=2 * rows * d)                                # two residual adds
            + layer_norm_cost(rows * d, rows, weight=given("norm_weight_1"), bias=given("norm_bias_1"))
            + layer_norm_cost(rows * d, rows, weight=given("norm_weight_2"), bias=given("norm_bias_2"))
            + matmul_cost(1, rows, d, ff, bias=given("ffn_bias_1")) + act
            + matmul_cost(1, rows, ff, d, bias=given("ffn_bias_2")))

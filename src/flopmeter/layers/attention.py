"""Multi-head attention: projections, the attention core and the output projection.

Model width d, h query heads of width e = d/h, h_kv key/value heads (grouped-query
attention; h_kv = h otherwise), L_q queries and L_k keys per sample. The core computes P
query–key pairs per head: L_q·L_k, or under a causal mask counted exactly
P = Σ_{i<L_q} min(i + 1, L_k) = m·(m + 1)/2 + (L_q − m)·L_k with m = min(L_q, L_k). Counting
rules as in ``formulas/attention.py``: scale and softmax (4 + one exp) per score, mask add
and dropout (2) per score when present.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import NoClosedFormError
from .derivation import Derivation, Work
from .registry import closed_form


@dataclass(frozen=True)
class Attention:
    """One attention block's shape and options (see :func:`attention`)."""

    N: int
    L_q: int
    L_k: int
    d: int
    h: int
    h_kv: int | None = None           # grouped-query attention: fewer key/value heads
    d_k: int | None = None            # key input width (nn.MultiheadAttention's kdim), default d
    d_v: int | None = None            # value input width (vdim), default d
    q_bias: bool = False
    kv_bias: bool = False
    out_bias: bool = False
    mask: bool = False                # an additive mask is added to the scores
    causal: str | None = None         # "full" or "exact": a causal mask, counted in full or exactly
    dropout: bool = False             # attention dropout (training)
    scale_q: bool = False             # scale q (N·L_q·d) instead of the scores
    average_weights: bool = False     # average the returned weights over heads


def attention(layer: str = "attention", inputs: str = "", **config) -> Derivation:
    """The closed form of an attention block: ``attention(N=1, L_q=10, L_k=10, d=256, h=8,
    out_bias=True)``; keywords are the fields of :class:`Attention`."""
    spec = Attention(**config)
    w = Work(layer, inputs)
    attention_steps(w, spec)
    return w.done()


def attention_steps(w: Work, a: Attention) -> None:
    w.set(N=a.N, L_q=a.L_q, L_k=a.L_k, d=a.d, h=a.h)
    kv = "d"
    if a.h_kv is not None and a.h_kv != a.h:
        w.set(h_kv=a.h_kv)
        kv = "d_kv"
        w.let("d_kv", "h_kv·(d/h)", note="key/value width")
    k_in, v_in = _width(w, "d_k", a.d_k, a.d), _width(w, "d_v", a.d_v, a.d)
    k_proj, v_proj = _times(k_in, kv), _times(v_in, kv)
    w.count("params", _sum(["d²", k_proj, v_proj, "d²"]) + _bias(a.q_bias, a.kv_bias, a.out_bias, kv))

    pairs, rows = "L_q·L_k", "L_q"
    if a.causal == "exact":
        w.let("m", "min(L_q, L_k)")
        w.let("P", "m·(m + 1)/2 + (L_q − m)·L_k", note="unmasked pairs of a top-left causal mask")
        pairs = "P"
    elif a.causal == "full":
        w.note("the causal mask is counted in full, as dense kernels compute it")
    w.count("macs", "N·L_q·d²", note="q projection")
    w.count("macs", _sum([f"N·L_k·{k_proj}", f"N·L_k·{v_proj}"]), note="k, v projections")
    w.count("macs", f"N·h·{pairs}·(d/h)", note="scores q·kᵀ")
    w.count("macs", f"N·h·{pairs}·(d/h)", note="weighted sum of v")
    w.count("macs", "N·L_q·d²", note="output projection")
    w.count("dots", "N·L_q·d", note="q projection")
    w.count("dots", f"2·N·L_k·{kv}", note="k, v projections")
    w.count("dots", f"N·h·{pairs}", note="scores")
    w.count("dots", f"N·h·{rows}·(d/h)", note="weighted sum")
    w.count("dots", "N·L_q·d", note="output projection")
    if a.q_bias:
        w.count("elementwise", "N·L_q·d", note="q bias")
    if a.kv_bias:
        w.count("elementwise", f"2·N·L_k·{kv}", note="k, v biases")
    if a.scale_q:
        w.count("elementwise", "N·L_q·d", note="scale q by 1/√(d/h)")
    else:
        w.count("elementwise", f"N·h·{pairs}", note="scale the scores by 1/√(d/h)")
    if a.mask:
        w.count("elementwise", f"N·h·{pairs}", note="mask add")
    w.count("elementwise", f"4·N·h·{pairs}", note="softmax: max, subtract, sum, divide")
    w.count("transcendental", f"N·h·{pairs}", note="softmax exp")
    if a.dropout:
        w.count("elementwise", f"2·N·h·{pairs}", note="dropout")
    if a.out_bias:
        w.count("elementwise", "N·L_q·d", note="output bias")
    if a.average_weights:
        w.count("elementwise", "N·h·L_q·L_k", note="average the weights over heads")


def _width(w: Work, name: str, value: int | None, d: int) -> str:
    if value is None or value == d:
        return "d"
    w.set(**{name: value})
    return name


def _times(a: str, b: str) -> str:
    return f"{a}²" if a == b else f"{a}·{b}"


def _sum(terms: list[str]) -> str:
    """Equal terms collected: ["d²", "d·d_k", "d²"] → "2·d² + d·d_k"."""
    out: list[str] = []
    for t in dict.fromkeys(terms):
        k = terms.count(t)
        out.append(f"{k}·{t}" if k > 1 else t)
    return " + ".join(out)


def _bias(q: bool, kv: bool, out: bool, width: str) -> str:
    terms = (["d"] if q else []) + ([width, width] if kv else []) + (["d"] if out else [])
    return " + " + _sum(terms) if terms else ""


@closed_form(nn.MultiheadAttention)
def multihead_attention(m: nn.MultiheadAttention, call):
    """PyTorch's nn.MultiheadAttention, whichever path it takes (the fused fast path and the
    unfused one count the same). Returning the weights (``need_weights=True``, the default)
    scales q instead of the scores and, by default, averages the weights over heads. A bool
    mask is first turned into an additive one (one op per mask element); both masks given:
    one add per score to merge them. ``is_causal`` without weights or padding mask runs a
    causal kernel instead of adding ``attn_mask``; it is counted as ``Options(causal=…)`` says."""
    if m.bias_k is not None or m.add_zero_attn:
        raise NoClosedFormError("no closed form for MultiheadAttention with add_bias_kv or add_zero_attn",
                                hint="the traced ops are still counted; only the closed-form comparison is missing")
    q, k = call.arg(0, "query"), call.arg(1, "key")
    kpm, need = call.arg(3, "key_padding_mask"), bool(call.arg(4, "need_weights", True))
    mask, average = call.arg(5, "attn_mask"), bool(call.arg(6, "average_attn_weights", True))
    is_causal = bool(call.arg(7, "is_causal", False))
    batched = q.ndim == 3
    n = (q.shape[0] if m.batch_first else q.shape[1]) if batched else 1
    lq, lk = (q.shape[1], k.shape[1]) if batched and m.batch_first else (q.shape[0], k.shape[0])
    causal_kernel = is_causal and kpm is None and not need
    w = Work(f"MultiheadAttention(embed_dim={m.embed_dim}, num_heads={m.num_heads}"
             + ("" if m.batch_first else ", batch_first=False") + ")", call.describe())
    in_bias = m.in_proj_bias is not None
    attention_steps(w, Attention(
        n, lq, lk, m.embed_dim, m.num_heads, d_k=m.kdim, d_v=m.vdim, q_bias=in_bias, kv_bias=in_bias,
        out_bias=m.out_proj.bias is not None, mask=not causal_kernel and (mask is not None or kpm is not None),
        causal=call.causal if causal_kernel else None, dropout=m.training and m.dropout > 0, scale_q=need,
        average_weights=need and average))
    for name, t in (("attn_mask", mask), ("key_padding_mask", kpm)):
        if t is not None and not t.dtype.is_floating_point:
            w.set(**{f"n_{name}": t.numel})
            w.count("elementwise", f"n_{name}", note=f"bool {name} → additive mask")
    if mask is not None and kpm is not None:
        w.count("elementwise", "N·h·L_q·L_k", note="merge the two masks")
    return w.done()


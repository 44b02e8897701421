"""Whole-model estimates for decoder-only transformer language models (the usual ones from
the scaling-law literature), useful as a cross-check against a traced count."""

from __future__ import annotations

from .derivation import Derivation, Work


def decoder_estimate(*, layers: int, d_model: int, vocab: int, context: int) -> Derivation:
    """Parameters ≈ 12·L·d² + V·d: per layer 4·d² for the attention projections and 8·d² for
    a 4·d-wide MLP, plus the token embedding (tied to the output head). Forward FLOPs per token
    ≈ 2·params + 2·L·n_ctx·d: every weight multiplies once (the head's V·d included), and the
    scores and weighted sum each cost n_ctx·d per layer under a causal mask counted exactly
    (a token attends on average to about half the context). Biases, norms and position
    embeddings are left out."""
    w = Work(f"decoder-only transformer (L={layers}, d={d_model}, V={vocab}, n_ctx={context})", approx=True,
             L=layers, d=d_model, V=vocab, n_ctx=context)
    w.let("P", "12·L·d² + V·d", note="parameters")
    w.count("params", "P")
    w.count("macs", "P + L·n_ctx·d", note="per token")
    w.let("FLOPs_per_token", "2·P + 2·L·n_ctx·d", note="dot convention")
    return w.done()

"""Embedding lookups."""

from __future__ import annotations

from torch import nn

from ..errors import NoClosedFormError
from .derivation import Work
from .registry import closed_form, describe


@closed_form(nn.Embedding)
def embedding(m, call):
    """A table of V rows of width d (V·d parameters); looking up n indices does no arithmetic:
    it reads the n indices and the n rows it picks, and writes those rows (bytes only)."""
    if m.max_norm is not None:
        raise NoClosedFormError("no closed form for Embedding with max_norm (it renormalises rows in place)",
                                hint="the traced ops are still counted; only the closed-form comparison is missing")
    ids = call.input
    w = Work(describe(m), call.describe(), V=m.num_embeddings, d=m.embedding_dim, n=ids.numel,
             b_i=ids.dtype.itemsize, b_w=m.weight.element_size())
    w.count("params", "V·d")
    w.count("macs", "0", note="a lookup")
    w.count("bytes_read", "n·b_i + n·d·b_w", note="indices and the rows picked")
    w.count("bytes_written", "n·d·b_w")
    return w.done()

"""Complexity from traces: the longest chain of dependent ops, and exact polynomials in
several sizes at once (the "complexity per layer" and "sequential operations" columns of the
survey's table, for any layer).

**Sequential operations** = the length of the longest chain of ops where each one reads what
an earlier one wrote (the trace's tensor identities give the dependencies; a view shares its
base's storage, so a read of a storage after an in-place write into one of its views depends
on that write). Free ops (views, reshapes, metadata) add nothing to a chain. A fused
recurrent kernel (``aten.mkldnn_rnn_layer``, ``aten._cudnn_rnn``) is one event in the trace
but a loop of dependent cell steps, one per time step (per layer), so it adds that many; its
unfused decomposition (oneDNN off) shows the same loop op by op.

**Per-layer complexity**: :func:`polynomial` counts a layer at a grid of sizes and returns
its cost as an exact polynomial in all of them (nested exact interpolation, each level
checked at a size it did not use), e.g. ``{(2, 1): 2, (1, 2): 12}`` for 2·n²·d + 12·n·d².
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Sequence

from .errors import FlopmeterError
from .report import Report
from .scaling import _power, evaluate, interpolate

_RECURRENT = {"aten.mkldnn_rnn_layer", "aten._cudnn_rnn"}


def _steps(ev) -> int:
    """Dependent steps inside one event: the time steps of a fused recurrent kernel, else 1."""
    if ev.op not in _RECURRENT:
        return 1
    x = ev.arg("input")
    if ev.op == "aten.mkldnn_rnn_layer":            # one layer; its input is time-major already
        return x.shape[0]
    steps = x.shape[1] if ev.arg("batch_first", False) and x.ndim == 3 else x.shape[0]
    return steps * ev.arg("num_layers", 1)


def longest_chain(report: Report) -> int:
    """Sequential operations: the longest chain of dependent, non-free ops in the report's trace."""
    depth: dict[tuple[str, int], int] = {}

    def key(t):
        return ("storage", t.storage) if t.storage >= 0 else ("tensor", t.id)

    best = 0
    for row in report.ops:
        ev = row.event
        ins, outs = ev.inputs, ev.outputs
        if any(getattr(t, "id", -1) < 0 for t in ins + outs):
            raise FlopmeterError("this trace has no tensor identities (ids); record it with this flopmeter",
                                 hint="record the trace again with this flopmeter (its saved traces keep tensor ids)")
        d = max((depth.get(key(t), 0) for t in ins), default=0)
        if row.status != "free":
            d += _steps(ev)
        for t in outs:
            k = key(t)
            depth[k] = max(depth.get(k, 0), d)
        best = max(best, d)
    return best


Monomials = dict[tuple[int, ...], Fraction]


def polynomial(value_at: Callable[..., int], grid: Sequence[tuple[Sequence[int], int]]) -> Monomials:
    """``value_at(*sizes)`` as an exact polynomial: ``grid`` gives, per variable, the sizes to fit
    on and one check size. Returns exponents → coefficient (zero terms dropped). Raises when a
    check fails (the value is not a polynomial of that degree on the grid)."""
    return _fit(value_at, list(grid), ())


def _fit(value_at, grid, fixed: tuple) -> Monomials:
    sizes, check = grid[0]
    points = list(sizes) + [check]
    if len(grid) == 1:
        values = {s: value_at(*fixed, s) for s in points}
        coef = interpolate(sizes, [values[s] for s in sizes])
        if evaluate(coef, check) != values[check]:
            raise FlopmeterError(f"not a polynomial of degree < {len(sizes)} at {fixed + (check,)}",
                                 hint="the cost is not polynomial in the size here: widen the sizes, or look for branches")
        return {(k,): c for k, c in enumerate(coef) if c}
    inner = {s: _fit(value_at, grid[1:], fixed + (s,)) for s in points}
    terms = set().union(*inner.values())
    out: Monomials = {}
    for term in terms:
        coef = interpolate(sizes, [inner[s].get(term, 0) for s in sizes])
        if evaluate(coef, check) != inner[check].get(term, 0):
            raise FlopmeterError(f"the coefficient of {term} is not a polynomial of degree < {len(sizes)}",
                                 hint="the cost is not polynomial in the size here: widen the sizes, or look for branches")
        out.update({(k, *term): c for k, c in enumerate(coef) if c})
    return out


def show(poly: Monomials, names: Sequence[str]) -> str:
    """{(2, 1): 2, (1, 2): 12} with names (n, d) → '2·n²·d + 12·n·d²' (highest total degree first)."""
    if not poly:
        return "0"
    parts = []
    for exps in sorted(poly, key=lambda e: (-sum(e), [-x for x in e])):
        c = poly[exps]
        factors = [_power(v, e) for v, e in zip(names, exps) if e]
        coef = str(c) if c.denominator == 1 else f"({c})"
        parts.append("·".join(([coef] if c != 1 or not factors else []) + factors))
    return " + ".join(parts)


def leading(poly: Monomials, names: Sequence[str]) -> str:
    """The terms of highest total degree without their constants: 'n²·d + n·d²' → O(·)."""
    if not poly:
        return "0"
    top = max(sum(e) for e in poly)
    return " + ".join("·".join(_power(v, e) for v, e in zip(names, exps) if e) or "1"
                      for exps in sorted((e for e in poly if sum(e) == top), key=lambda e: [-x for x in e]))




# -- the survey's table (Vaswani et al. 2017, Table 1), from traces --------------------------

def _layers():
    import torch
    from torch import nn

    from .api import count

    def encoder(n, d):
        layer = nn.TransformerEncoderLayer(d, 2, 4 * d, batch_first=True)   # d_ff = 4·d
        return count(layer, torch.randn(1, n, d))

    def lstm(n, d):
        return count(nn.LSTM(d, d, batch_first=True), torch.randn(1, n, d))

    def lstm_unfused(n, d):                          # PyTorch's reference cells, op by op
        with torch.backends.mkldnn.flags(enabled=False):
            return lstm(n, d)

    def conv(n, d, k):
        return count(nn.Conv1d(d, d, k, padding=k // 2), torch.randn(1, d, n))

    return encoder, lstm, lstm_unfused, conv


N, D, K = ([4, 8, 16], 12), ([8, 16, 32], 24), ([1, 3, 5], 7)


def survey_table() -> list[dict]:
    """Per layer type: MACs per layer as an exact polynomial in n (length), d (width) and k
    (kernel), and sequential operations (longest chain) as a polynomial in n at d = 16, k = 3."""
    encoder, lstm, lstm_unfused, conv = _layers()
    rows = []
    for name, survey, layer, grid, names, seq in (
            ("Transformer encoder layer", ("n²·d", "1"), encoder, (N, D), "nd", lambda n: encoder(n, 16)),
            ("  its self-attention", ("n²·d", "1"), lambda n, d: encoder(n, d).module("self_attn"), (N, D), "nd",
             None),
            ("LSTM (oneDNN kernel)", ("n·d²", "n"), lstm, (N, D), "nd", lambda n: lstm(n, 16)),
            ("LSTM (reference cells)", ("n·d²", "n"), lstm_unfused, (N, D), "nd", lambda n: lstm_unfused(n, 16)),
            ("Conv1d, kernel k", ("k·n·d²", "1"), conv, (N, D, K), "ndk", lambda n: conv(n, 16, 3))):
        macs = polynomial(lambda *s: _macs(layer(*s)), grid)
        chain = polynomial(lambda n: longest_chain(seq(n)), [N]) if seq else None
        rows.append({"layer": name, "survey_complexity": survey[0], "survey_sequential": survey[1],
                     "macs": show(macs, names), "complexity": leading(macs, names),
                     "chain": show(chain, "n") if chain else "", "sequential": leading(chain, "n") if chain else "",
                     "macs_terms": macs, "chain_terms": chain})
    return rows


def _macs(x) -> int:
    return x.macs if isinstance(x, Report) else x.total.macs


__all__ = ["leading", "longest_chain", "polynomial", "show", "survey_table"]

"""Human-readable numbers: 4_089_184_256 → '4.09G'; exact integers with --raw."""

from __future__ import annotations

_PREFIXES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


class ParamCount(int):
    """A number of parameters: shown with B for billions (6.74B, as people write for LLMs),
    where operation counts keep the SI prefix G. Otherwise a plain int (CSV, JSON)."""


def human(n: int | float, raw: bool = False) -> str:
    if raw:
        return f"{int(n):,}"
    for scale, prefix in _PREFIXES:
        if abs(n) >= scale:
            if prefix == "G" and isinstance(n, ParamCount):
                prefix = "B"
            value = n / scale
            return f"{value:.3g}{prefix}" if value < 100 else f"{value:.0f}{prefix}"
    return f"{int(n)}"


def human_unit(n: int, unit: str, raw: bool = False) -> str:
    """'4.09 GMACs', '1.2 MFLOPs', '230 MB' — the unit always named."""
    if raw:
        return f"{int(n):,} {unit}"
    text = human(n)
    if text[-1].isalpha():
        return f"{text[:-1]} {text[-1]}{unit}"
    return f"{text} {unit}"


def duration(s: float, raw: bool = False):
    """A duration: '3.25 ms', '550 µs'; the number of seconds itself with ``raw``."""
    if raw:
        return s
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"

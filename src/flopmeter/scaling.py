"""How cost grows with the input: count at a handful of sizes, fit per module and in total.

For each figure (MACs, FLOPs under the report's convention, bytes read + written, and any
numeric total of a ``memory`` section the report dict carries) and each module that ran at
every size, the values are interpolated *exactly* — a polynomial in the size with rational
coefficients (Newton's divided differences over :class:`fractions.Fraction`) — and checked
at a size that was not used for the fit. Where the check holds the cost is that polynomial
(transformers in sequence length are); where it does not (CNNs in resolution, where striding
makes the cost piecewise polynomial) only the leading exponent is fitted, from the two
largest sizes on a log-log scale, and :attr:`Fit.exact` says so.

    from flopmeter.scaling import scan
    result = scan(lambda n: flopmeter.count(model, input_shape=(1, n, 64)), [16, 32, 64, 128], holdout=48)
    result.total["macs"].coefficients   # (c0, c1, c2, …): value(n) = Σ c_k·n^k
    result.total["macs"].big_o()        # 'n²'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

from .errors import InputError
from .report import Report

_SUPERSCRIPT = str.maketrans("0123456789-.", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻·")


def interpolate(xs: Sequence[int], ys: Sequence[int]) -> tuple[Fraction, ...]:
    """The polynomial of degree < len(xs) through the points, as exact monomial coefficients
    (c0, c1, …), trailing zeros dropped."""
    n = len(xs)
    coef = [Fraction(y) for y in ys]
    for j in range(1, n):                       # divided differences, in place
        for i in range(n - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) / (xs[i] - xs[i - j])
    poly = [Fraction(0)] * n                    # Horner on the Newton form → monomial basis
    for i in range(n - 1, -1, -1):
        # poly = poly·(x − xs[i]) + coef[i]
        shifted = [Fraction(0)] + poly[:-1]
        poly = [shifted[k] - xs[i] * poly[k] for k in range(n)]
        poly[0] += coef[i]
    while len(poly) > 1 and poly[-1] == 0:
        poly.pop()
    return tuple(poly)


def evaluate(coefficients: Sequence[Fraction], x: int) -> Fraction:
    value = Fraction(0)
    for c in reversed(coefficients):
        value = value * x + c
    return value


def _power(var: str, k: int) -> str:
    return "1" if k == 0 else var if k == 1 else f"{var}{str(k).translate(_SUPERSCRIPT)}"


@dataclass(frozen=True)
class Fit:
    """One figure of one module as a function of the size."""

    sizes: tuple[int, ...]
    values: tuple[int, ...]
    coefficients: tuple[Fraction, ...] | None      # exact polynomial, or None when the check failed
    exponent: float | None                         # log-log slope of the two largest sizes
    holdout: tuple[int, int] | None = None         # (size, value) the polynomial was checked on
    variable: str = "n"

    @property
    def exact(self) -> bool:
        return self.coefficients is not None

    @property
    def degree(self) -> int | None:
        if self.coefficients is None or all(c == 0 for c in self.coefficients):
            return None
        return len(self.coefficients) - 1

    def __call__(self, size: int) -> Fraction:
        if self.coefficients is None:
            raise ValueError("not a polynomial in the size; only the leading exponent was fitted")
        return evaluate(self.coefficients, size)

    def polynomial(self) -> str:
        """'1536·n² + 7.47e+07·n' style, exact coefficients: '1536·n² + 74711040·n'."""
        if self.coefficients is None:
            return f"≈ c·{self.variable}^{self.exponent:.2f}" if self.exponent is not None else "—"
        terms = []
        for k in range(len(self.coefficients) - 1, -1, -1):
            c = self.coefficients[k]
            if c == 0:
                continue
            num = str(c) if c.denominator == 1 else f"({c})"
            terms.append(num if k == 0 else f"{num}·{_power(self.variable, k)}")
        return " + ".join(terms).replace("+ -", "− ") or "0"

    def big_o(self, two_d: bool = False) -> str:
        """The leading term without its constant: 'n²', 'n', '1' ('0' when always zero); for a
        square input of side S in two dimensions (two_d), in powers of H·W: S² → 'H·W'. From the
        exact polynomial when there is one, else from the fitted exponent."""
        if all(v == 0 for v in self.values):
            return "0"
        e = float(self.degree or 0) if self.coefficients is not None else self.exponent
        if e is None:
            return "?"
        if two_d:
            half = round(e / 2 * 4) / 4            # exponent of H·W, to a quarter
            if abs(e - 2 * half) < 0.15:
                return "1" if half == 0 else "H·W" if half == 1 else f"(H·W)^{half:g}"
        rounded = round(e)
        if abs(e - rounded) < 0.05:
            return _power(self.variable, rounded)
        return f"{self.variable}^{e:.2f}"


def fit(sizes: Sequence[int], values: Sequence[int], holdout: tuple[int, int] | None = None,
        variable: str = "n") -> Fit:
    sizes, values = tuple(sizes), tuple(values)
    coefficients = interpolate(sizes, values)
    if holdout is not None:
        exact = evaluate(coefficients, holdout[0]) == holdout[1]
    else:                                           # no check size: the points must over-determine it
        exact = len(coefficients) < len(sizes)
    coefficients = coefficients if exact else None
    (s0, v0), (s1, v1) = sorted(zip(sizes, values))[-2:]
    exponent = math.log(v1 / v0) / math.log(s1 / s0) if v0 > 0 and v1 > 0 else None
    return Fit(sizes, values, coefficients, exponent, holdout, variable)


def figures(report: Report) -> dict[str, dict[str, int]]:
    """module path → figure → value, for one report: macs, flops, bytes (and memory totals)."""
    out = {}
    for node in report.modules():
        t = node.total
        out[node.path] = {"macs": t.macs, "flops": t.flops(report.convention),
                          "bytes": t.bytes_read + t.bytes_written}
    out[""].update(memory_figures(report.to_dict(ops=False).get("memory")))
    return out


def memory_figures(memory) -> dict[str, int]:
    """Totals of a report dict's ``memory`` section (the memory analysis, when the report has
    one): its integer figures, the timeline's peak and the activations' largest live total."""
    if not isinstance(memory, dict):
        return {}
    out = {f"memory.{k}": v for k, v in memory.items() if isinstance(v, int) and not isinstance(v, bool)}
    timeline = memory.get("timeline")
    if isinstance(timeline, dict):
        peak = timeline.get("peak")
        if isinstance(peak, dict) and isinstance(peak.get("bytes"), int):
            out["memory.peak"] = peak["bytes"]
        acts = timeline.get("activations")
        if isinstance(acts, list) and acts:
            out["memory.activations"] = max(acts)
    return out


@dataclass
class Scaling:
    """Fits per module (path → figure → Fit) and in total (``modules[""]``)."""

    variable: str
    sizes: tuple[int, ...]
    holdout: int | None
    modules: dict[str, dict[str, Fit]]
    types: dict[str, str] = field(default_factory=dict)
    model: str = ""
    two_d: bool = False                # the size is the side of a square input (H = W = size)

    @property
    def total(self) -> dict[str, Fit]:
        return self.modules[""]

    def big_o(self, path: str = "", figure: str = "macs") -> str:
        return self.modules[path][figure].big_o(self.two_d)


def scan(count_at: Callable[[int], Report], sizes: Sequence[int], holdout: int | None = None, *,
         variable: str = "n", two_d: bool = False, progress: Callable[[int], None] | None = None) -> Scaling:
    """Count at each size (and at ``holdout``, which the fits never see) and fit every figure."""
    sizes = tuple(sorted(set(sizes)))
    if len(sizes) < 3:
        raise InputError(f"a scaling fit needs at least 3 sizes, got {len(sizes)}",
                         hint="widen the range, e.g. 128:2048")
    if holdout in sizes:
        raise InputError(f"the check size {holdout} is one of the fitted sizes",
                         hint="pick a check size outside the fitted ones, or leave it to the default")
    per_size = {}
    report = None
    for s in sizes + ((holdout,) if holdout is not None else ()):
        if progress:
            progress(s)
        report = count_at(s)
        per_size[s] = figures(report)
    paths = [p for p in per_size[sizes[0]] if all(p in per_size[s] for s in per_size)]
    modules: dict[str, dict[str, Fit]] = {}
    for path in paths:
        modules[path] = {}
        for name in per_size[sizes[0]][path]:
            if not all(name in per_size[s][path] for s in per_size):
                continue
            values = [per_size[s][path][name] for s in sizes]
            check = (holdout, per_size[holdout][path][name]) if holdout is not None else None
            modules[path][name] = fit(sizes, values, check, variable)
    types = {n.path: n.type for n in report.modules()} if report is not None else {}
    return Scaling(variable, sizes, holdout, modules, types, report.model if report else "", two_d)


def size_range(text: str) -> tuple[tuple[int, ...], int]:
    """'128:8192' → the fitted sizes (powers of two times the start, at most 8) and a check size
    between two of them that the fit does not use."""
    try:
        lo, hi = (int(p) for p in text.split(":"))
    except ValueError:
        raise InputError(f"cannot read the size range '{text}'", hint="write it as START:END, e.g. 128:8192") from None
    if not 0 < lo < hi:
        raise InputError(f"the size range '{text}' must go up from a positive start", hint="e.g. 128:8192")
    sizes = []
    s = lo
    while s <= hi and len(sizes) < 8:
        sizes.append(s)
        s *= 2
    if len(sizes) < 4:                              # a narrow range: evenly spaced instead
        step = max(1, (hi - lo) // 4)
        sizes = sorted({lo + i * step for i in range(4)} | {hi})
    holdout = sizes[0] + sizes[1]                   # 3·lo for a doubling grid: between two fitted sizes
    if holdout in sizes:
        holdout += 1
    return tuple(sizes), holdout


__all__ = ["Fit", "Scaling", "evaluate", "fit", "interpolate", "memory_figures", "scan", "size_range"]

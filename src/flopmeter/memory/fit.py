"""The largest batch (or context) whose predicted peak fits a budget — from a few traces.

Written against a function ``peak(x) -> bytes`` (one fake trace per call). Memory of a forward
is affine in the batch size wherever every tensor's size is (a fixed part: weights; a part
per sample: inputs and activations), so two traces give the line and the answer
``b = ⌊(budget − a) / s⌋``; a third trace at ``b`` and a fourth at ``b + 1`` verify it by the
model's own prediction. In context length attention can add a quadratic part, so the context
search fits a parabola through three traces. Where the model is not exactly affine (or
quadratic) — shapes rounded to a multiple, another op's peak past some size — the fit is
made again through the largest and smallest points that fit (a wide baseline), a guess past
a trace that does not fit is replaced by interpolating between the bracket's ends [largest
that fits, smallest that does not], and one that would leave the bracket by its midpoint; a
fitted guess is checked with its neighbour. The search stops when the bracket closes, so the
answer always comes with one trace that fits and, unless it is the upper limit, one at the
answer + 1 that does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

from ..errors import FlopmeterError


@dataclass(frozen=True)
class Probe:
    x: int
    bytes: int
    fits: bool
    why: str                      # "start", "fit", "verify", "interpolate", "midpoint", "grow"


@dataclass
class Search:
    """The answer, every trace it took (in order), and the fitted form of the first fit."""

    variable: str                 # "batch" or "context"
    budget: int
    answer: int                   # 0: not even the smallest fits
    limit: int | None             # the upper limit the search was capped at (e.g. max positions)
    probes: list[Probe] = field(default_factory=list)
    form: str = ""
    fixed: dict = field(default_factory=dict)     # what stayed the same: {"batch": 1} for a context search
    fit_points: tuple = ()                        # the traces the first fit (``form``) went through

    @property
    def at_limit(self) -> bool:
        return self.limit is not None and self.answer == self.limit

    def bytes_at(self, x: int) -> int | None:
        for p in self.probes:
            if p.x == x:
                return p.bytes
        return None

    @property
    def on_curve(self) -> bool:
        """Whether every trace lies exactly on the first fit (then ``form`` is the curve the
        traces show; otherwise the model is not affine / quadratic here and the traces are the
        answer's evidence, not the form)."""
        if not self.form or len(self.fit_points) < 2:
            return False
        poly = _polynomial(list(self.fit_points))
        return all(poly(Fraction(p.x)) == p.bytes for p in self.probes)

    def to_dict(self) -> dict:
        return {"variable": self.variable, "budget": self.budget, "answer": self.answer, "limit": self.limit,
                "fixed": dict(self.fixed), "form": self.form, "on_curve": self.on_curve,
                "fit_points": [list(p) for p in self.fit_points],
                "traces": [{"x": p.x, "bytes": p.bytes, "fits": p.fits, "why": p.why} for p in self.probes]}


def _polynomial(points: list[tuple[int, int]]):
    """The polynomial of degree len − 1 through ``points`` (Lagrange form, exact fractions)."""
    xs = [Fraction(x) for x, _ in points]
    ys = [Fraction(y) for _, y in points]

    def f(x):
        total = Fraction(0)
        for i, (xi, yi) in enumerate(zip(xs, ys)):
            term = yi
            for j, xj in enumerate(xs):
                if j != i:
                    term *= (x - xj) / (xi - xj)
            total += term
        return total
    return f


def _solve(points: list[tuple[int, int]], budget: int) -> tuple[int | None, str]:
    """Largest integer x with poly(x) ≤ budget for the polynomial through ``points`` (degree
    len − 1, 1 or 2), searched over x ≥ 1 where it increases; None when it does not grow."""
    xs = [Fraction(p[0]) for p in points]
    ys = [Fraction(p[1]) for p in points]
    if len(points) == 2:
        s = (ys[1] - ys[0]) / (xs[1] - xs[0])
        a = ys[0] - s * xs[0]
        form = f"{int(a):,} + {int(s):,}·x" if s.denominator == 1 and a.denominator == 1 else f"{float(a):,.0f} + {float(s):,.1f}·x"
        if s <= 0:
            return None, form
        return int((budget - a) // s), form
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    # Newton's divided differences: y0 + d1·(x − x0) + d2·(x − x0)(x − x1)
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    d2 = (d12 - d01) / (x2 - x0)
    c2, c1, c0 = d2, d01 - d2 * (x0 + x1), y0 - d01 * x0 + d2 * x0 * x1

    def f(x):
        return c0 + c1 * x + c2 * x * x
    form = f"{float(c0):,.0f} + {float(c1):,.1f}·x + {float(c2):,.3f}·x²"
    if f(Fraction(max(p[0] for p in points)) * 2) <= f(Fraction(max(p[0] for p in points))):
        return None, form
    lo, hi = 0, 1
    while f(hi) <= budget:
        lo, hi = hi, hi * 2
        if hi > 2**40:
            return None, form
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if f(mid) <= budget else (lo, mid)
    return lo, form


def _baseline(known: dict[int, int], budget: int, degree: int) -> list[tuple[int, int]]:
    """The points to fit: the largest that fits, the smallest that fits (a wide baseline is not
    thrown off by rounding between neighbours) and, for a parabola, the fitting point nearest
    their middle; points that do not fit only where too few fit (past the budget the peak may
    come from another op, a different polynomial)."""
    fitting = sorted(x for x in known if known[x] <= budget)
    failing = sorted(x for x in known if known[x] > budget)
    chosen = []
    if fitting:
        chosen = [fitting[-1]] + ([fitting[0]] if len(fitting) > 1 else [])
        if degree == 2 and len(fitting) > 2:
            middle = (fitting[0] + fitting[-1]) / 2
            chosen.append(min(fitting[1:-1], key=lambda x: abs(x - middle)))
    chosen += failing[: degree + 1 - len(chosen)]
    if len({known[x] for x in chosen}) < len(chosen):
        chosen = chosen[:2]
    return sorted((x, known[x]) for x in chosen)


def largest_fitting(peak: Callable[[int], int], budget: int, *, variable: str = "batch",
                    start: tuple[int, ...] = (1, 2), limit: int | None = None, max_traces: int = 12) -> Search:
    """The largest x (≥ 1, ≤ ``limit``) with ``peak(x) <= budget``; ``answer`` 0 when even
    ``start[0]`` does not fit. ``len(start)`` is the degree of the fit plus one."""
    search = Search(variable, budget, 0, limit)
    known: dict[int, int] = {}

    def probe(x: int, why: str) -> bool:
        if x not in known:
            known[x] = int(peak(x))
            search.probes.append(Probe(x, known[x], known[x] <= budget, why))
        return known[x] <= budget

    points = [s for s in start if limit is None or s <= limit]
    for x in points:
        probe(x, "start")
    lo = max((x for x in known if known[x] <= budget), default=0)     # largest known to fit (0: none)
    hi = min((x for x in known if known[x] > budget), default=None)   # smallest known not to fit
    degree = len(start) - 1
    while len(search.probes) < max_traces:
        if limit is not None and lo >= limit:
            search.answer = limit
            return search
        if hi is not None and hi == lo + 1:
            search.answer = lo
            return search
        baseline = _baseline(known, budget, degree)
        guess, form = _solve(baseline, budget)
        if not search.form:
            search.form, search.fit_points = form, tuple(baseline)
        ceiling = (hi - 1) if hi is not None else limit
        why = "fit"
        if guess is None:                 # flat between these points: grow the bracket
            guess, why = (ceiling if ceiling is not None else 2 * max(known)), "grow"
        if hi is not None and guess >= hi and lo > 0:
            # the fit (from points that fit) overshoots a trace that does not: interpolate the bracket
            guess = lo + (budget - known[lo]) * (hi - lo) // max(known[hi] - known[lo], 1)
            why = "interpolate"
        if ceiling is not None:
            guess = min(guess, ceiling)
        if guess <= lo and lo + 1 not in known:
            guess, why = lo + 1, "verify"            # the fit says lo: check the one above it
        elif guess <= lo or guess in known:
            # the fit points outside the bracket: take its midpoint (or grow it when open above)
            guess, why = ((lo + hi) // 2 if hi is not None else 2 * max(lo, 1)), "midpoint"
        if probe(guess, why):
            lo = guess
            if why == "fit" and (limit is None or lo < limit) and (hi is None or lo + 1 < hi):
                if probe(lo + 1, "verify"):
                    lo += 1
                else:
                    hi = lo + 1
        else:
            hi = guess
            if why == "fit" and guess - 1 > lo and guess - 1 not in known:
                if probe(guess - 1, "verify"):
                    lo = guess - 1
                else:
                    hi = guess - 1
    raise FlopmeterError(f"no largest {variable} found in {max_traces} traces",
                         hint=f"the predicted peak grows too little (or too irregularly) with the {variable}; "
                              "check that the inputs' first dimension is the batch")


__all__ = ["Probe", "Search", "largest_fitting"]

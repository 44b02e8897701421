"""Derivations: a closed form's work written out the way a textbook does.

A :class:`Step` reads ``name = symbolic formula = the formula with numbers = value``. The
value is computed *from the formula text* by a small exact evaluator (``·`` ``×`` ``/``
``+`` ``−``, ``⌊…⌋``, ``⌈…⌉``, ``²``, ``³``, ``min``, ``max``, ``gcd``; rational arithmetic, so
``C_in/g`` is exact), so the formula shown and the number returned cannot drift apart.
A :class:`Work` collects the steps of one layer and ends in a :class:`Derivation`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction
from math import ceil, floor, gcd

from ..cost import CONVENTIONS, Cost

# counted quantities: Cost fields, plus parameters and buffers
QUANTITIES = {"params": "params", "buffers": "buffers", "macs": "MACs", "dots": "dot products",
              "elementwise": "elementwise", "transcendental": "transcendental",
              "bytes_read": "bytes read", "bytes_written": "bytes written"}
_COST_FIELDS = ("macs", "dots", "elementwise", "transcendental", "bytes_read", "bytes_written")

_TO_PYTHON = str.maketrans({"·": "*", "×": "*", "−": "-", "⌊": "floor(", "⌋": ")", "⌈": "ceil(", "⌉": ")",
                            "²": "**2", "³": "**3"})
_FUNCTIONS = {"floor": floor, "ceil": ceil, "min": min, "max": max, "gcd": lambda a, b: gcd(int(a), int(b))}
_NAME = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_(])")
_QUOTIENT = re.compile(r"\((\d+)/(\d+)\)")


def evaluate(formula: str, env: dict[str, int]) -> int:
    """The integer value of ``formula`` with the symbols in ``env``."""
    tree = ast.parse(formula.translate(_TO_PYTHON), mode="eval")
    value = _eval(tree.body, env, formula)
    if Fraction(value).denominator != 1:
        raise ValueError(f"{formula} is not a whole number ({value}) with {env}")
    return int(value)


def _eval(node, env, formula):
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ValueError(f"unknown symbol {node.id} in {formula}")
        return Fraction(env[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env, formula)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env, formula), _eval(node.right, env, formula)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.Div: lambda: a / b, ast.Pow: lambda: a ** int(b)}
        if type(node.op) in ops:
            return ops[type(node.op)]()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        return Fraction(_FUNCTIONS[node.func.id](*(_eval(a, env, formula) for a in node.args)))
    raise ValueError(f"cannot evaluate {ast.dump(node)} in {formula}")


def substitute(formula: str, env: dict[str, int]) -> str:
    """The formula with every known symbol replaced by its number; a parenthesised quotient
    of two numbers, such as ``(C_in/g)`` → ``(64/4)``, is shown as its value ``16``."""
    text = _NAME.sub(lambda m: str(env[m.group(1)]) if m.group(1) in env else m.group(1), formula)
    return _QUOTIENT.sub(lambda m: str(Fraction(int(m.group(1)), int(m.group(2))))
                         if int(m.group(1)) % int(m.group(2)) == 0 else m.group(0), text)


@dataclass(frozen=True)
class Step:
    name: str                 # a symbol ("H_out") or a counted quantity's label ("MACs")
    formula: str              # symbolic: "N·C_out·H_out·W_out·(C_in/g)·K_h·K_w"
    substituted: str          # with numbers: "1·64·112·112·3·7·7"
    value: int
    quantity: str | None = None   # a key of QUANTITIES for counted steps, None for symbols
    note: str = ""
    approx: bool = False

    def __str__(self) -> str:
        parts = [self.formula]
        if self.substituted not in (self.formula, str(self.value)):
            parts.append(self.substituted)
        if self.formula != str(self.value):
            parts.append(f"{self.value:,}")
        label = f"{self.name} ({self.note})" if self.note and self.quantity else self.name
        text = f"{label} {'≈' if self.approx else '='} " + " = ".join(parts)
        return text + (f"   [{self.note}]" if self.note and not self.quantity else "")


@dataclass(frozen=True)
class Derivation:
    """A layer's closed form: what it is (``layer``, ``inputs``), the symbols read from its
    configuration and inputs (``given``), derived symbols and counted quantities (``steps``)."""

    layer: str
    inputs: str
    given: tuple[tuple[str, int], ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    def step(self, name: str) -> Step:
        """The step that defines symbol ``name`` (e.g. ``"H_out"``)."""
        for s in self.steps:
            if s.name == name and s.quantity is None:
                return s
        raise KeyError(name)

    def has(self, quantity: str) -> bool:
        return any(s.quantity == quantity for s in self.steps)

    def total(self, quantity: str) -> int:
        return sum(s.value for s in self.steps if s.quantity == quantity)

    @property
    def cost(self) -> Cost:
        return Cost(*(self.total(f) for f in _COST_FIELDS))

    @property
    def params(self) -> int:
        return self.total("params")

    def symbolic(self) -> list[str]:
        """``name = formula`` of every step, without numbers (what the docs page lists)."""
        return [f"{s.name}{f' ({s.note})' if s.note and s.quantity else ''} {'≈' if s.approx else '='} {s.formula}"
                for s in self.steps]

    def render(self) -> str:
        lines = [f"{self.layer}" + (f" on {self.inputs}" if self.inputs else "")]
        if self.given:
            lines.append("  where " + ", ".join(f"{k} = {v}" for k, v in self.given))
        shown: set[str] = set()
        for step in self.steps:
            lines.append(f"  {step}")
            q = step.quantity
            terms = [s for s in self.steps if s.quantity == q]
            if q and len(terms) > 1 and step is terms[-1] and q not in shown:
                shown.add(q)
                lines.append(f"  {QUANTITIES[q]} = " + " + ".join(f"{s.value:,}" for s in terms)
                             + f" = {self.total(q):,}")
        if any(s.quantity in _COST_FIELDS[:4] for s in self.steps):
            lines += [f"  {line}" for line in flop_lines(self.cost)]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def flop_lines(cost: Cost) -> list[str]:
    """FLOPs under every convention, each written out from the primitive counts."""
    out = []
    for conv in CONVENTIONS.values():
        sym = ["MACs" if conv.mac_weight == 1 else f"{conv.mac_weight}·MACs"]
        num = [f"{cost.macs:,}" if conv.mac_weight == 1 else f"{conv.mac_weight}·{cost.macs:,}"]
        if conv.dot_discount:
            sym.append("− dots")
            num.append(f"− {cost.dots:,}")
        if conv.other_weight:
            sym.append("+ elementwise + transcendental")
            num.append(f"+ {cost.elementwise:,} + {cost.transcendental:,}")
        value = f"{conv.flops(cost):,}"
        out.append(" = ".join([f"FLOPs ({conv.name})", " ".join(sym)] + [" ".join(num)] * (" ".join(num) != value)
                              + [value]))
    return out


class Work:
    """Builds a Derivation: ``w.let("H_out", "⌊(H_in + 2·p − …)/s⌋ + 1")``, ``w.count("macs", "N·I·O")``."""

    def __init__(self, layer: str, inputs: str = "", *, approx: bool = False, **given: int):
        self.layer, self.inputs, self.approx = layer, inputs, approx
        self.env: dict[str, int] = {}
        self.given: list[tuple[str, int]] = []
        self.steps: list[Step] = []
        self.notes: list[str] = []
        self.set(**given)

    def set(self, **symbols: int) -> None:
        """Symbols read off the layer's configuration or inputs."""
        for name, value in symbols.items():
            self.env[name] = int(value)
            self.given.append((name, int(value)))

    def let(self, name: str, formula: str, *, value: int | None = None, note: str = "") -> int:
        """A derived symbol. ``value`` is for formulas the evaluator cannot read (a Σ or a set size)."""
        return self._step(name, formula, value, None, note)

    def count(self, quantity: str, formula: str, *, note: str = "", value: int | None = None) -> int:
        """A term of a counted quantity (several terms of one quantity add up)."""
        return self._step(QUANTITIES[quantity], formula, value, quantity, note)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def _step(self, name, formula, value, quantity, note) -> int:
        value = evaluate(formula, self.env) if value is None else int(value)
        self.steps.append(Step(name, formula, substitute(formula, self.env), value, quantity, note, self.approx))
        if quantity is None:
            self.env[name] = value
        return value

    def done(self) -> Derivation:
        return Derivation(self.layer, self.inputs, tuple(self.given), tuple(self.steps), tuple(self.notes))

"""The cost record and the FLOP conventions.

A :class:`Cost` holds primitive counts only; a :class:`Convention` is data that turns
those counts into one FLOP number. Because every report keeps Costs, FLOPs under any
convention come from one trace.

Primitive counts:

- ``macs``: multiply-accumulates inside dot products (matmul, conv, attention).
- ``dots``: how many dot products those MACs form (a length-k dot product is k MACs
  and one of ``dots``); ``exact`` FLOPs need it (k multiplications + k − 1 additions).
- ``elementwise``: arithmetic ops outside dot products, one per element per op
  (bias adds, residual adds, ReLU, normalisation arithmetic, pooling, reductions).
- ``transcendental``: ops that evaluate exp, log, tanh, erf, sqrt, sin, … (one per
  element); kept apart from ``elementwise`` because they cost more on hardware.
- ``bytes_read`` / ``bytes_written``: tensor bytes an op reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import OptionsError, did_you_mean


@dataclass(frozen=True, slots=True)
class Cost:
    macs: int = 0
    dots: int = 0
    elementwise: int = 0
    transcendental: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.macs + other.macs,
            self.dots + other.dots,
            self.elementwise + other.elementwise,
            self.transcendental + other.transcendental,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
        )

    def __radd__(self, other):  # lets sum() start from 0
        if other == 0:
            return self
        return self.__add__(other)

    def scaled(self, factor: int) -> "Cost":
        return Cost(*(getattr(self, f.name) * factor for f in fields(self)))

    def with_bytes(self, read: int, written: int) -> "Cost":
        return Cost(self.macs, self.dots, self.elementwise, self.transcendental, read, written)

    @property
    def is_zero(self) -> bool:
        return not (self.macs or self.dots or self.elementwise or self.transcendental or self.bytes_read
                    or self.bytes_written)

    def flops(self, convention: "str | Convention" = "dot") -> int:
        return get_convention(convention).flops(self)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO = Cost()


@dataclass(frozen=True)
class Convention:
    """FLOPs = mac_weight·MACs − dot_discount·dots + other_weight·(elementwise + transcendental)."""

    name: str
    description: str
    mac_weight: int
    dot_discount: int
    other_weight: int

    def flops(self, cost: Cost) -> int:
        return (self.mac_weight * cost.macs - self.dot_discount * cost.dots
                + self.other_weight * (cost.elementwise + cost.transcendental))


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("dot", "FLOPs = 2 × MACs; nothing else counted (PyTorch FlopCounterMode, MFU, LLM papers)", 2, 0, 0),
        Convention("all", "FLOPs = 2 × MACs + one per bias add and per elementwise, normalisation, "
                          "softmax, pooling and reduction op", 2, 0, 1),
        Convention("exact", "like 'all', but a length-k dot product costs k multiplications + (k − 1) additions", 2, 1, 1),
        Convention("mac", "FLOPs = MACs (torchvision 'GFLOPS', fvcore, ptflops 'GMac')", 1, 0, 0),
    )
}


def get_convention(convention: "str | Convention") -> Convention:
    if isinstance(convention, Convention):
        return convention
    try:
        return CONVENTIONS[convention]
    except KeyError:
        hint = did_you_mean(convention, CONVENTIONS, otherwise=f"choose one of: {', '.join(CONVENTIONS)}")
        raise OptionsError(f"unknown FLOP convention '{convention}'", hint=hint) from None
